"""The certificate search's serial range (`serialFrom`/`serialTo`) as a database range over
the indexed, zero-padded `Certificate.serial_sort`: numeric order at every boundary (equal
ends, inclusive ends, serials of different lengths, 159-bit serials, bounds past the
largest serial), in every form the client may send, on SQLite and on PostgreSQL (CI runs
this file with DATABASE_URL set); the index is what the database uses; the migration fills
the column for rows that exist before it."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from requests_app import pki, services
from requests_app.models import MAX_SERIAL_LENGTH, Certificate
from requests_app.rest import search
from tests.helpers.csrs import make_csr

#: Serials of different lengths, their neighbours, and 159-bit serials (2**158 <= s < 2**159,
#: what a 20-byte positive serial with the top bit clear holds).
SERIALS = [
    1,
    0xF,
    0x10,
    0xFF,
    0x100,
    0xABC,
    0xFFF,
    0x1000,
    2**64 - 1,
    2**64,
    2**158,
    2**158 + 0xABC,
    2**159 - 1,
]
LARGEST = 16**MAX_SERIAL_LENGTH - 1
#: How a client may write a bound: 0x-hex, decimal, 0x-hex with leading zeros, upper case.
FORMS = [
    lambda n: f"0x{n:x}",
    str,
    lambda n: f"0x{n:048x}",
    lambda n: f"0X{n:X}",
]


def _row(ca, serial: int) -> Certificate:
    """A certificate row with this serial (the search reads only the row's columns)."""
    now = pki.utcnow()
    text = pki.serial_hex(serial)
    return Certificate(
        ca=ca,
        serial=text,
        subject=f"CN=s{text}.example.test",
        not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
        profile="server",
        pem="",
        fingerprint_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


@pytest.fixture
def serials(ca):
    # bulk_create, as services.bulk does: the database computes serial_sort.
    Certificate.objects.bulk_create([_row(ca, n) for n in SERIALS])
    return SERIALS


def _found(criteria: dict) -> set[int]:
    return {int(c.serial, 16) for c in search.search(criteria, public=False)}


def test_serial_sort_is_the_padded_serial(serials):
    """The database fills serial_sort on insert (bulk_create too) and keeps it in step."""
    for cert in Certificate.objects.all():
        assert cert.serial_sort == cert.serial.rjust(MAX_SERIAL_LENGTH, "0")
    cert = Certificate.objects.get(serial="abc")
    cert.serial = "abd"
    cert.save()
    assert Certificate.objects.get(pk=cert.pk).serial_sort == "abd".rjust(MAX_SERIAL_LENGTH, "0")


def test_serial_ranges_at_every_boundary(serials):
    """Every (from, to) pair over each serial, its neighbours, 0, the largest serial and
    beyond it, and open ends, finds exactly the serials with from <= s <= to."""
    bounds = sorted({0, LARGEST, LARGEST + 1} | {n + d for n in serials for d in (-1, 0, 1)})
    ends = [None, *bounds]
    checked = 0
    for i, low in enumerate(ends):
        for j, high in enumerate(ends):
            form = FORMS[(i + j) % len(FORMS)]
            criteria = {"serialNumberRangeInUse": True}
            if low is not None:
                criteria["serialFrom"] = form(low)
            if high is not None:
                criteria["serialTo"] = form(high)
            expected = {
                n for n in serials if (low is None or low <= n) and (high is None or n <= high)
            }
            assert _found(criteria) == expected, criteria
            checked += 1
    assert checked == len(ends) ** 2


def test_equal_ends_find_exactly_that_serial(serials):
    """from == to names one certificate, whatever its length."""
    for n in serials:
        bound = f"0x{n:x}"
        assert _found({"serialNumberRangeInUse": True, "serialFrom": bound, "serialTo": bound}) == {
            n
        }


def test_the_serial_range_through_the_rest_api(client, ca, agent):
    """Issued certificates (random 159-bit serials) found by a range through the API."""
    certs = [
        services.approve_request(
            services.submit_request(
                profile="server", csr=make_csr(cn=f"r{n}.example.test"), requester_email="o@x.test"
            ),
            agent=agent,
        )
        for n in range(4)
    ]
    numbers = sorted(int(c.serial, 16) for c in certs)
    assert all(n < 2**159 for n in numbers)
    body = {
        "serialNumberRangeInUse": True,
        "serialFrom": f"0x{numbers[1]:x}",
        "serialTo": str(numbers[2]),
    }
    response = client.post("/ca/rest/certs/search", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert sorted(int(e["id"], 16) for e in response.json()["entries"]) == numbers[1:3]


def _plan(queryset) -> str:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a handful of rows: make the planner show
            cursor.execute("SET LOCAL enable_seqscan = off")  # what it can use
    return queryset.explain()


def test_the_range_is_an_index_range(serials):
    """The database answers the range from the serial_sort index, not by reading every row."""
    everything = Certificate.objects.all()
    both = search._serial_range(everything, 0x10, 2**158)
    assert "certificate_serial_sort" in _plan(both), _plan(both)
    low_only = search._serial_range(everything, 2**64, None)
    assert "certificate_serial_sort" in _plan(low_only), _plan(low_only)
    assert [int(c.serial, 16) for c in both.order_by("serial_sort")] == [
        n for n in SERIALS if 0x10 <= n <= 2**158
    ]


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_existing_rows(ca):
    """Rows that exist before 0012 get their serial_sort when it runs."""
    Certificate.objects.bulk_create([_row(ca, n) for n in (0xABC, 2**159 - 1)])
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("requests_app", "0012_expiry_index")])
        with connection.cursor() as cursor:
            table = Certificate._meta.db_table
            columns = connection.introspection.get_table_description(cursor, table)
        assert "serial_sort" not in {column.name for column in columns}
        executor = MigrationExecutor(connection)
        executor.migrate([("requests_app", "0013_certificate_serial_sort")])
        assert sorted(Certificate.objects.values_list("serial_sort", flat=True)) == [
            "abc".rjust(MAX_SERIAL_LENGTH, "0"),
            ("7" + "f" * 39).rjust(MAX_SERIAL_LENGTH, "0"),
        ]
    finally:
        # Back to the latest schema, whatever failed above: the tests after this one need it.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
