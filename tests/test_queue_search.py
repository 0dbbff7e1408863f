"""The agent queue's one search box (requests_app.queue_search): request IDs, serials,
emails, subjects and SANs; a whole ID or serial opens its request; hostile input changes
nothing. Runs on SQLite and, with DATABASE_URL, on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from requests_app import queue_search, services
from requests_app.models import CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed


def _submit(cn, *, email, hostnames=()):
    return submit_confirmed(
        profile="server",
        csr=make_csr(cn=cn),
        requester_email=email,
        extra_hostnames=list(hostnames),
    )


@pytest.fixture
def queue(ca, agent):
    """Three requests: needle (issued, with a SAN), hay and straw (pending)."""
    needle = _submit(
        "needle.example.test",
        email="Needle.Person@Example.ORG",
        hostnames=["api-needle.example.test"],
    )
    hay = _submit("hay.example.test", email="hay@example.test")
    straw = _submit("straw.example.test", email="straw@other.test")
    cert = services.approve_request(needle, agent=agent)
    needle.refresh_from_db()
    return {"needle": needle, "hay": hay, "straw": straw, "cert": cert}


def _get(client, q, **params):
    return client.get(reverse("agent:request_list"), {"q": q, **params})


def _listed(client, q, **params):
    response = _get(client, q, **params)
    assert response.status_code == 200, (q, response.status_code)
    return {r.public_id for r in response.context["requests"]}


def test_one_search_box(agent_client, queue):
    """The queue page has one text box to search with, and no separate Find form."""
    html = agent_client.get(reverse("agent:request_list")).content.decode()
    assert html.count('type="search"') == 1
    assert 'id="find-q"' in html
    assert reverse("agent:find") not in html


@pytest.mark.parametrize(
    "form",
    [
        lambda r: r.public_id,
        lambda r: r.public_id.lower(),
        lambda r: r.display_id,
        lambda r: r.display_id.lower(),
        lambda r: " " + r.display_id.replace("-", " ") + " ",
    ],
)
def test_whole_request_id_opens_the_request(agent_client, queue, form):
    """A whole request ID, with or without hyphens, any case, opens the request."""
    for req in (queue["needle"], queue["hay"]):
        response = _get(agent_client, form(req))
        assert response.status_code == 302
        assert response["Location"] == req.get_agent_url()


def test_start_of_a_request_id_lists_it(agent_client, queue):
    """The first characters of an ID (with a hyphen or not, any case) list the request."""
    hay = queue["hay"]
    assert hay.public_id in _listed(agent_client, hay.display_id[:9].lower())
    assert hay.public_id in _listed(agent_client, hay.public_id[:6])
    assert queue["needle"].public_id not in _listed(agent_client, hay.public_id[:8])


@pytest.mark.parametrize(
    "form",
    [
        lambda s: s,  # our lower-case hex
        lambda s: s.upper(),
        lambda s: queue_search.Certificate(serial=s).serial_colons,  # as OpenSSL prints it
        lambda s: queue_search.Certificate(serial=s).serial_colons.lower(),
        lambda s: "0x" + s,
        lambda s: " ".join(s[i : i + 4] for i in range(0, len(s), 4)),
    ],
)
def test_serial_opens_the_request(agent_client, queue, form):
    """A certificate serial in the forms people paste opens the request it answered."""
    response = _get(agent_client, form(queue["cert"].serial))
    assert response.status_code == 302
    assert response["Location"] == queue["needle"].get_agent_url()


def test_unknown_serial_lists_nothing(agent_client, queue):
    """A serial nobody has lists nothing and says what was searched."""
    response = _get(agent_client, "ab" * 20)
    assert response.status_code == 200
    assert list(response.context["requests"]) == []
    assert "No request matches" in response.content.decode()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("Needle.Person@Example.ORG", {"needle"}),  # the whole address, as stored
        ("needle.person@example.org", {"needle"}),  # any case
        ("NEEDLE.PERSON@example.org", {"needle"}),
        ("needle.person@exa", {"needle"}),  # its start
        ("needle.person", {"needle"}),
        ("@example.test", {"hay"}),  # a domain
        ("example.org", {"needle"}),
        ("person@example.org", {"needle"}),  # its end
        ("straw@other.test", {"straw"}),
        ("@other.test", {"straw"}),
    ],
)
def test_email_search(agent_client, queue, q, expected):
    """Addresses are found whole or in part, in any case, and never read as an ID."""
    assert _listed(agent_client, q) == {queue[name].public_id for name in expected}


def test_unknown_email_is_not_called_an_id_or_serial(agent_client, queue):
    """An address nobody used is "no request matches", never "no request has the ID"."""
    response = _get(agent_client, "x@y")
    html = response.content.decode()
    assert response.status_code == 200
    assert list(response.context["requests"]) == []
    assert "No request matches “x@y”" in html
    assert "has the ID" not in html and "serial “x@y”" not in html
    follow = agent_client.get(reverse("agent:find"), {"q": "x@y"}, follow=True)
    assert "No request matches “x@y”" in follow.content.decode()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("needle.example.test", {"needle"}),  # the CN
        ("CN=needle", {"needle"}),  # as the subject reads
        ("cn=NEEDLE.example", {"needle"}),
        ("example.test", {"needle", "hay", "straw"}),
        ("DNS:api-needle.example.test", {"needle"}),  # a SAN as stored
        ("api-needle", {"needle"}),  # part of a SAN
        ("straw", {"straw"}),
    ],
)
def test_subject_and_san_search(agent_client, queue, q, expected):
    """Subjects, CNs and SANs are found by any part, in any case."""
    assert _listed(agent_client, q) == {queue[name].public_id for name in expected}


def test_search_keeps_the_filters(agent_client, queue):
    """A search applies within the status filter."""
    assert _listed(agent_client, "example.test", status="pending") == {
        queue["hay"].public_id,
        queue["straw"].public_id,
    }
    assert _listed(agent_client, "needle", status="pending") == set()


@pytest.mark.parametrize(
    "q",
    [
        "%",
        "_",
        "%%",
        "__________",
        "'",
        '"',
        "' OR '1'='1",
        '"; DROP TABLE requests_app_certificaterequest; --',
        "\\",
        "needle%",
        "n_edle",
        "%@%",
        "_@_",
        "CN=%",
        "DNS:%",
        "<script>alert(1)</script>",
        "\x00",
        "needle\x00",
        "x" * 1000,
        "@" * 200,
        "😀",
        "\u202e",
    ],
)
def test_hostile_search_changes_nothing(agent_client, queue, q):
    """Wildcards, quotes, NUL and very long input match literally (here: nothing), never
    500, and leave every row as it was."""
    before = list(CertificateRequest.objects.order_by("pk").values_list("public_id", "status"))
    response = _get(agent_client, q)
    assert response.status_code == 200
    if "\x00" in q or len(q) > 200:  # refused on the form (and not searched)
        assert 'class="errorlist' in response.content.decode()
    else:
        assert list(response.context["requests"]) == []
    after = list(CertificateRequest.objects.order_by("pk").values_list("public_id", "status"))
    assert after == before
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_nul_or_too_long_is_reported_on_the_form(agent_client, queue):
    """A NUL or an over-long search is refused on the form instead of searched."""
    for q in ("a\x00b", "y" * 201):
        html = _get(agent_client, q).content.decode()
        assert 'class="errorlist' in html


def test_email_lookup_walks_its_index(queue):
    """An address (or its start) is looked up in the request_email_lower index, not scanned."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")  # three rows: make the plan honest
    plan = queue_search._email_prefix("needle.person@exa").explain()
    assert (
        "request_email_pattern" if connection.vendor == "postgresql" else "request_email_lower"
    ) in plan


def test_id_prefix_walks_the_unique_index(queue):
    """The start of a request ID is a range of the public_id index."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
    qs = queue_search._prefix(
        CertificateRequest.objects.all(), "public_id", queue["hay"].public_id[:6], "~"
    )
    plan = qs.explain()
    assert "public_id" in plan and "SCAN requests_app_certificaterequest\n" not in plan + "\n"
    assert list(qs) == [queue["hay"]]


def test_cn_prefix_walks_its_index(queue):
    """The start of a CN is a range of the request_subject_lower index, not a scan."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
    lookup = queue_search._subject_prefix("NEEDLE.exa")
    plan = lookup.explain()
    name = (
        "request_subject_pattern" if connection.vendor == "postgresql" else "request_subject_lower"
    )
    assert name in plan
    assert [row["pk"] for row in lookup] == [queue["needle"].pk]


def test_parts_are_matched_in_the_newest_window(agent_client, queue, monkeypatch):
    """Any part of a name is matched among the newest SCAN_WINDOW requests only; the start
    of a CN, an address or an ID is found however old."""
    monkeypatch.setattr(queue_search, "SCAN_WINDOW", 2)  # needle is the oldest of three
    assert _listed(agent_client, "api-needle") == set()
    assert _listed(agent_client, "needle.example") == {queue["needle"].public_id}
    assert _listed(agent_client, "needle.person@ex") == {queue["needle"].public_id}
    assert _listed(agent_client, "hay") == {queue["hay"].public_id}
