"""The Expiring page at scale: keyset paging (a cursor on (not_after, id) in the Later
link, no OFFSET, no COUNT), the email and subject-prefix searches that start from their own
index, the subject search key written at issuance and by the data migration, and the
capped counts."""

from __future__ import annotations

import datetime as dt
import html
import importlib
import re

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests_app import expiry
from requests_app.models import Certificate
from tests.helpers.expiry import issue

pytestmark = pytest.mark.django_db
URL = reverse("agent:expiring")


@pytest.fixture
def small_pages(monkeypatch):
    from requests_app.views import expiring as view

    monkeypatch.setattr(view, "PAGE_SIZE", 2)


@pytest.fixture
def tied(ca, agent, settings):
    """Seven certificates of which five expire at the very same instant (ties on
    not_after), one of the user profile, and one revoked-looking one outside the window."""
    settings.DELIVERY_AUTOMATIC = False
    made = [issue(agent, cn=f"t{i}.example.test", validity_days=3 + i % 2) for i in range(6)]
    made.append(
        issue(agent, profile="user", cn="Ann Tied", email="ann@example.test", validity_days=4)
    )
    same = made[0].not_after.replace(microsecond=123456)
    Certificate.objects.filter(pk__in=[c.pk for c in made[1:6]]).update(not_after=same)
    return made


def next_link(response) -> str | None:
    match = re.search(r'<a href="([^"]+)" rel="next">', response.content.decode())
    return html.unescape(match[1]) if match else None


def walk(client, params) -> tuple[list[str], list]:
    """Every page from the first by following the Later links: the serials in order and
    the queries of the pages after the first."""
    serials, later_queries = [], []
    response = client.get(URL, params)
    while True:
        assert response.status_code == 200
        serials += [c.serial for c in response.context["certificates"]]
        link = next_link(response)
        if not link:
            return serials, later_queries
        with CaptureQueriesContext(connection) as queries:
            response = client.get(URL + link if link.startswith("?") else link)
        later_queries += queries.captured_queries


def expected(params_filter) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    rows = expiry.expiring(now=now, within_days=30, **params_filter)
    return list(rows.values_list("serial", flat=True))


def test_keyset_pages_cover_every_row_once_in_order(agent_client, tied, small_pages):
    """With ties on not_after and pages of two, following Later links lists each
    certificate once, in (not_after, id) order, and no page counts or skips by OFFSET."""
    serials, queries = walk(agent_client, {"within": 30})
    assert serials == expected({})
    assert len(serials) == len(set(serials)) == 7
    order = list(
        Certificate.objects.filter(serial__in=serials)
        .order_by("not_after", "pk")
        .values_list("serial", flat=True)
    )
    assert serials == order
    sql = " ".join(q["sql"].upper() for q in queries)
    assert queries and "OFFSET" not in sql and "COUNT(" not in sql


def test_keyset_pages_keep_the_filters(agent_client, tied, small_pages):
    """The Later link keeps the window, the profile and the search."""
    serials, _ = walk(agent_client, {"within": 30, "profile": "server"})
    assert serials == expected({"profile": "server"}) and len(serials) == 6
    link = next_link(agent_client.get(URL, {"within": 30, "profile": "server", "q": "t"}))
    assert "within=30" in link and "profile=server" in link and "q=t" in link and "after=" in link
    serials, _ = walk(agent_client, {"within": 30, "q": "T"})  # a subject prefix, any case
    assert serials == expected({"q": "t"}) and len(serials) == 6


def test_a_search_by_index_pages_too(agent_client, tied, small_pages, monkeypatch):
    """The email and subject lookups page with the same cursor; a prefix too common for a
    lookup (more candidates than the limit) is matched along the window, same result."""
    serials, _ = walk(agent_client, {"within": 30, "q": "t"})
    monkeypatch.setattr(expiry, "MAX_SEARCH_CANDIDATES", 2)
    assert walk(agent_client, {"within": 30, "q": "t"})[0] == serials
    assert walk(agent_client, {"within": 30, "q": "ops@example.test"})[0] == serials


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "1-2-3",
        "-5-1",
        "1.5-2",
        "999999999999999999-1",  # past year 9999
        "1700000000000000-99999999999999999999",  # beyond any id
        "1700000000000000-1' OR '1'='1",
        "\x00",
    ],
)
def test_a_tampered_cursor_is_a_clear_400(agent_client, tied, cursor):
    """A cursor this page did not make is refused with a plain message, never a 500."""
    response = agent_client.get(URL, {"within": 30, "after": cursor})
    assert response.status_code == 400
    assert b"paging link is not valid" in response.content


def test_a_well_formed_cursor_anywhere_is_just_a_position(agent_client, tied):
    """A cursor before everything lists from the start, after everything lists nothing."""
    assert [c.serial for c in agent_client.get(URL, {"after": "0-0"}).context["certificates"]]
    assert (
        agent_client.get(URL, {"after": "0-0"}).context["certificates"][0].serial
        == (expected({})[0])
    )
    far = expiry.encode_cursor(dt.datetime(9000, 1, 1, tzinfo=dt.UTC), 1)
    assert agent_client.get(URL, {"after": far}).context["certificates"] == []


def test_cursor_round_trip():
    when = dt.datetime(2027, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
    assert expiry.decode_cursor(expiry.encode_cursor(when, 42)) == (when, 42)


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("t3.exa", True),
        ("T3.EXAMPLE.TEST", True),
        ("CN=t3.example", True),
        ("cn=T3", True),
        ("example.test", False),  # the middle of the CN: a prefix search does not find it
        ("3.example", False),
        ("t3%", False),  # LIKE's wildcards are literal
        ("t_.example", False),
    ],
)
def test_subject_search_matches_the_start_of_the_cn(agent_client, tied, query, found):
    page = agent_client.get(URL, {"within": 30, "q": query})
    assert ({c.serial for c in page.context["certificates"]} == {tied[3].serial}) is found
    if not found:
        assert page.context["certificates"] == []


def test_the_page_says_subject_search_matches_the_start(agent_client, db):
    assert "matches the start of the subject" in agent_client.get(URL).content.decode()


def test_subject_search_key_is_written_at_issuance(tied):
    assert tied[6].subject_search == "ann tied"
    assert Certificate.objects.get(pk=tied[0].pk).subject_search == "t0.example.test"


def test_subject_search_key():
    from requests_app.pki import subject_search_key

    assert subject_search_key("CN=WWW.Example.COM,O=Org") == "www.example.com"
    assert subject_search_key("O=No CN,C=DE") == "o=no cn,c=de"
    assert subject_search_key("not a DN at all ===") == "not a dn at all ==="
    assert len(subject_search_key("CN=" + "a" * 400)) == 255


def test_data_migration_fills_existing_rows(tied):
    """Rows from before the migration (an empty key) get it from their subject."""
    Certificate.objects.update(subject_search="")
    migration = importlib.import_module("requests_app.migrations.0014_certificate_subject_search")
    migration.fill_subject_search(apps, connection.schema_editor())
    assert Certificate.objects.get(pk=tied[2].pk).subject_search == "t2.example.test"
    assert not Certificate.objects.filter(subject_search="").exists()


def plan(queryset) -> str:
    if connection.vendor == "postgresql":  # tiny tables: make the planner show its index
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_email_and_subject_lookups_use_their_index(tied):
    """EXPLAIN: an email search starts from an index on the lower-cased address
    (request_email_lower, or on PostgreSQL the queue search's request_email_pattern, which
    serves equality as well), a subject search from certificate_subject_search; the page of
    an email search reads the certificates by primary key, not along certificate_expiry."""
    email_plan = plan(expiry.lookup_query("Ops@Example.test"))
    assert "request_email_lower" in email_plan or "request_email_pattern" in email_plan
    assert "certificate_subject_search" in plan(expiry.lookup_query("t3.example"))
    now = dt.datetime.now(dt.UTC)
    page = expiry.expiring(now=now, within_days=30, q="ops@example.test")[:51]
    assert "certificate_expiry" not in plan(page)


def test_counts_are_capped_database_counts(ca, agent, settings):
    """Both windows are counted in one query, COUNT over a LIMITed subquery: at most
    cap + 1 rows."""
    settings.DELIVERY_AUTOMATIC = False
    for i in range(3):
        issue(agent, cn=f"c{i}.example.test", validity_days=3)
    now = dt.datetime.now(dt.UTC)
    with CaptureQueriesContext(connection) as queries:
        counts = expiry.count_expiring_by(now=now, windows=(7, 30), cap=1)
    assert counts == {7: 2, 30: 2}
    assert expiry.count_expiring_by(now=now, windows=(7, 30)) == {7: 3, 30: 3}
    assert len(queries.captured_queries) == 1
    assert "LIMIT 2" in queries.captured_queries[0]["sql"]
