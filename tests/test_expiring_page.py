"""The agents' Expiring page, the counts on the queue page and `list_certificates
--expiring-within`: windows, profile filter, search, renewal method and pending flag, and
who is refused."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from requests_app import expiry, services
from tests.helpers.expiry import issue, renew
from tests.helpers.mfa import login_verified

pytestmark = pytest.mark.django_db
URL = reverse("agent:expiring")


@pytest.fixture
def fleet(ca, agent, settings):
    """Certificates expiring in 5, 20, 60 and 120 days (one each), of several channels and
    profiles, and some that must never be listed (revoked, renewed, expired)."""
    settings.DELIVERY_AUTOMATIC = False
    settings.CA_PROFILES = {"server": {"validity_days": 120, "max_validity_days": 200}}
    certs = {
        "cm": issue(agent, cn="cm.example.test", channel="dogtag", validity_days=5),
        "acme": issue(agent, cn="acme.example.test", channel="acme", validity_days=20),
        "ann": issue(
            agent, profile="user", cn="Ann Example", email="ann@example.test", validity_days=60
        ),
        "far": issue(agent, cn="far.example.test", validity_days=120),
        "revoked": issue(agent, cn="revoked.example.test", validity_days=5),
        "renewed": issue(agent, cn="renewed.example.test", validity_days=5),
        "expired": issue(agent, cn="expired.example.test", validity_days=1),
    }
    services.revoke_certificate(certs["revoked"], reason="keyCompromise", actor=agent)
    renew(certs["renewed"], agent)
    certs["pending"] = renew(certs["cm"], agent, approve=False)
    # One expired a week ago (moved back rather than waited for).
    type(certs["expired"]).objects.filter(pk=certs["expired"].pk).update(
        not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    )
    return certs


def serials(response) -> set[str]:
    return {cert.serial for cert in response.context["certificates"]}


def test_windows_list_what_expires_soonest_first(agent_client, fleet):
    """7, 30 and 90 days list the certificates that lapse by then, soonest first; revoked,
    renewed and expired ones never."""
    page7 = agent_client.get(URL, {"within": 7})
    assert page7.status_code == 200
    assert serials(page7) == {fleet["cm"].serial}
    page30 = agent_client.get(URL, {"within": 30})
    assert [c.serial for c in page30.context["certificates"]] == [
        fleet["cm"].serial,
        fleet["acme"].serial,
    ]
    page90 = agent_client.get(URL, {"within": 90})
    assert serials(page90) == {fleet["cm"].serial, fleet["acme"].serial, fleet["ann"].serial}
    for name in ("revoked", "renewed", "expired", "far"):
        assert fleet[name].serial not in page90.content.decode()
    # The renewal of "renewed" is itself a valid certificate, expiring much later.
    assert agent_client.get(URL).context["within"] == 30  # the default window


def test_renewal_method_and_pending_flag(agent_client, fleet):
    """Each row says how the certificate renews (certmonger for the Dogtag channel, ACME,
    manual) and links a waiting renewal."""
    html = agent_client.get(URL, {"within": 90}).content.decode()
    rows = {
        cert.serial: cert for cert in agent_client.get(URL, {"within": 90}).context["certificates"]
    }
    assert rows[fleet["cm"].serial].renewal_method == "certmonger"
    assert rows[fleet["acme"].serial].renewal_method == "acme"
    assert rows[fleet["ann"].serial].renewal_method == "manual"
    assert rows[fleet["cm"].serial].pending_renewal == fleet["pending"].public_id
    assert rows[fleet["acme"].serial].pending_renewal is None
    assert html.count("renewal pending") == 1
    assert reverse("agent:request_detail", args=[fleet["pending"].public_id]) in html
    assert "certmonger (Dogtag protocol)" in html and "ACME client" in html


def test_profile_filter(agent_client, fleet):
    """A profile filter leaves that profile's certificates alone."""
    assert serials(agent_client.get(URL, {"within": 90, "profile": "user"})) == {
        fleet["ann"].serial
    }
    assert fleet["ann"].serial not in serials(
        agent_client.get(URL, {"within": 90, "profile": "server"})
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ann@EXAMPLE.test", "ann"),  # the requester's email, any case
        ("acme.example", "acme"),  # part of the subject
        ("DNS:cm.example", "cm"),  # a SAN
        ("email:ann@example", "ann"),  # a SAN of a personal certificate
    ],
)
def test_search(agent_client, fleet, query, expected):
    """Search finds by email, subject and SAN."""
    assert serials(agent_client.get(URL, {"within": 90, "q": query})) == {fleet[expected].serial}


def test_search_by_serial_and_request_id(agent_client, fleet):
    """A serial (with colons, any case) and the request ID of the certificate find it."""
    cert = fleet["acme"]
    colons = ":".join(cert.serial[i : i + 2] for i in range(0, len(cert.serial), 2)).upper()
    assert serials(agent_client.get(URL, {"within": 90, "q": colons})) == {cert.serial}
    assert serials(agent_client.get(URL, {"within": 90, "q": cert.request.display_id})) == {
        cert.serial
    }


def test_hostile_search_and_filters_change_nothing(agent_client, fleet):
    """SQL, a bad window, an unknown profile and a huge page number are shown as nothing
    found or the default, never an error."""
    for params in (
        {"q": "' OR 1=1 --"},
        {"q": "%"},
        {"within": "100000"},
        {"within": "-1"},
        {"profile": "nope"},
        {"page": "99999999999"},
        {"q": "x" * 500},
    ):
        response = agent_client.get(URL, params)
        assert response.status_code == 200, params
    assert serials(agent_client.get(URL, {"q": "' OR 1=1 --"})) == set()
    assert serials(agent_client.get(URL, {"q": "%"})) == set()
    assert agent_client.get(URL, {"within": "100000"}).context["within"] == 30


def test_queue_page_shows_the_counts(agent_client, fleet):
    """The queue page shows how many certificates expire in 7 and 30 days, unrenewed, and
    links the Expiring page."""
    html = agent_client.get(reverse("agent:request_list")).content.decode()
    assert f'href="{URL}?within=7">in 7 days (1)</a>' in html
    assert f'href="{URL}?within=30">in 30 days (2)</a>' in html


def test_counts_stop_at_the_cap(ca, agent, settings):
    """A count walks the index no further than its cap."""
    settings.DELIVERY_AUTOMATIC = False
    for i in range(4):
        issue(agent, cn=f"c{i}.example.test", validity_days=3)
    now = dt.datetime.now(dt.UTC)
    assert expiry.count_expiring(now=now, within_days=7) == 4
    assert expiry.count_expiring(now=now, within_days=7, cap=2) == 3  # "2+"


def test_anonymous_users_go_to_login(client, db):
    """An anonymous visitor is sent to the login page."""
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_non_agent_is_refused(client, django_user_model, db):
    """A logged-in user without the agent permission gets 403, even past a second factor."""
    user = django_user_model.objects.create_user("someone", "s@example.test", "pw-123456789")
    login_verified(client, user)
    assert client.get(URL).status_code == 403


def test_agent_without_second_factor_is_sent_to_it(client, agent, fleet):
    """An agent whose session has not passed the second factor sees nothing of the list."""
    client.force_login(agent)
    response = client.get(URL, {"within": 90})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("agent_verify"))
    assert client.post(URL).status_code == 403


def test_the_page_only_reads(agent_client, db):
    """POST is not a method of this page."""
    assert agent_client.post(URL).status_code == 405


# --- list_certificates --expiring-within --------------------------------------------


def test_list_certificates_expiring_within_json(fleet):
    """--expiring-within 30 --json lists the two certificates due within 30 days, soonest
    first, with their renewal method and pending renewal."""
    out = StringIO()
    call_command("list_certificates", "--expiring-within", "30", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert [r["serial"] for r in rows] == [fleet["cm"].serial, fleet["acme"].serial]
    assert rows[0]["renewal_method"] == "certmonger"
    assert rows[0]["renewal_pending"] is True
    assert rows[0]["pending_renewal_request"] == fleet["pending"].public_id
    assert rows[1]["renewal_method"] == "acme" and rows[1]["renewal_pending"] is False
    assert 19 < rows[1]["expires_in_days"] <= 20
    assert rows[1]["requester_email"] == "ops@example.test"


def test_list_certificates_expiring_within_text_and_refusals(fleet):
    """The text form has one line per certificate; days must be a whole number of at least 1."""
    out = StringIO()
    call_command("list_certificates", "--expiring-within", "90", "--profile", "user", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and fleet["ann"].serial_colons in lines[1] and "manual" in lines[1]
    out = StringIO()
    call_command("list_certificates", "--expiring-within", "1", stdout=out)
    assert "No certificates expire within 1 days." in out.getvalue()
    from django.core.management import CommandError

    for bad in ("0", "-3", "soon"):
        with pytest.raises(CommandError):
            call_command("list_certificates", "--expiring-within", bad)
