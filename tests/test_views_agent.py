"""Agent pages: who may open them, the queue, request details, decisions, the issued page."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests_app import expiry, keys, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_path
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.mfa import add_totp_device, login_verified, totp_code

Status = CertificateRequest.Status


def _submit(cn="www.example.test", *, email="admin@example.test", profile="server", csr=None):
    return submit_confirmed(profile=profile, csr=csr or make_csr(cn=cn), requester_email=email)


@pytest.fixture
def non_agent(db, django_user_model):
    """A logged-in user outside the agents group (staff, to show staff is not enough)."""
    return django_user_model.objects.create_user(
        "someone", "someone@example.test", "pass-someone-1", is_staff=True
    )


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.test", "pass-root-1")


@pytest.fixture
def issued_request(ca, agent):
    """A complete request with its certificate."""
    req = _submit("done.example.test")
    services.approve_request(req, agent=agent)
    req.refresh_from_db()
    return req


@pytest.fixture
def agent_client(client, agent):
    login_verified(client, agent)
    return client


# --- who may open the pages ---------------------------------------------------------

# (URL name, method, POST data, what an agent gets)
AGENT_URLS = [
    ("agent:request_list", "get", None, 200),
    ("agent:find", "get", None, 302),
    ("agent:request_detail", "get", None, 200),
    ("agent:approve", "post", {}, 302),
    ("agent:reject", "post", {"reason": "not ours"}, 302),
    ("agent:cancel", "post", {}, 302),
    ("agent:certificate_issued", "get", None, 200),
]


@pytest.mark.parametrize("who", ["anonymous", "non_agent", "agent", "superuser"])
@pytest.mark.parametrize(("name", "method", "data", "allowed"), AGENT_URLS)
def test_permission_matrix(request, client, pending_request, who, name, method, data, allowed):
    """Agents and superusers get in; others get 403, anonymous GETs go to the login page."""
    if who != "anonymous":
        login_verified(client, request.getfixturevalue(who))
    target = pending_request
    if name == "agent:certificate_issued":
        services.approve_request(pending_request, agent=None)
    if name in ("agent:request_list", "agent:find"):
        url = reverse(name)
    else:
        url = reverse(name, args=[target.public_id])
    if name == "agent:find":
        url += f"?q={target.public_id}"
    before = (list(CertificateRequest.objects.values_list("status")), Certificate.objects.count())

    response = getattr(client, method)(url, data or {})

    if who in ("agent", "superuser"):
        assert response.status_code == allowed
    elif who == "anonymous" and method == "get":
        assert response.status_code == 302
        location = urlsplit(response["Location"])
        assert location.path == reverse("login")
        assert parse_qs(location.query)["next"] == [url]
    else:
        assert response.status_code == 403
        assert "Not allowed" in response.content.decode()
    if who not in ("agent", "superuser"):
        after = (
            list(CertificateRequest.objects.values_list("status")),
            Certificate.objects.count(),
        )
        assert after == before


@pytest.mark.parametrize("name", ["agent:approve", "agent:reject", "agent:cancel"])
def test_actions_refuse_get(agent_client, pending_request, name):
    """The decision URLs answer GET with 405 and change nothing."""
    response = agent_client.get(reverse(name, args=[pending_request.public_id]))
    assert response.status_code == 405
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_actions_need_csrf_token(agent, pending_request):
    """A POST without the CSRF token is refused and changes nothing."""
    client = Client(enforce_csrf_checks=True)
    login_verified(client, agent)
    response = client.post(reverse("agent:approve", args=[pending_request.public_id]))
    assert response.status_code == 403
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_non_agent_403_page_explains(client, non_agent):
    """A logged-in non-agent is told why the page is closed."""
    login_verified(client, non_agent)
    html = client.get(reverse("agent:request_list")).content.decode()
    assert "someone, who is not a Certificate Manager agent" in html


def test_login_and_logout(client, agent):
    """An agent logs in on our page with password and code, lands on the queue, and logs
    out with the nav form."""
    device = add_totp_device(agent)
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert "Agent login" in page.content.decode()
    response = client.post(
        reverse("login"), {"username": "agent1", "password": "agent-pass-123"}, follow=True
    )
    assert response.redirect_chain[-1][0].startswith(reverse("agent_verify"))
    response = client.post(response.redirect_chain[-1][0], {"code": totp_code(device)}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("agent:request_list")
    html = response.content.decode()
    assert f'action="{reverse("logout")}"' in html
    assert "Log out" in html
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("agent:request_list")).status_code == 302


def test_login_refuses_wrong_password(client, agent):
    """A wrong password stays on the login page with a message."""
    response = client.post(reverse("login"), {"username": "agent1", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


# --- list ---------------------------------------------------------------------------


def test_list_newest_first_with_counts(agent_client, ca, agent):
    """The queue lists requests newest first and shows the counts per status."""
    first, second, third = (_submit(f"h{i}.example.test") for i in range(3))
    services.reject_request(first, agent=agent, reason="no")
    response = agent_client.get(reverse("agent:request_list"))
    html = response.content.decode()
    assert [r.pk for r in response.context["requests"]] == [third.pk, second.pk, first.pk]
    assert "Pending (2)" in html
    assert "Rejected (1)" in html
    assert "Complete (0)" in html
    assert third.display_id in html
    assert "admin@example.test" in html


def test_list_filters_by_status_and_profile(agent_client, ca, agent):
    """The status and profile filters narrow the list."""
    server = _submit("s.example.test")
    user = _submit("Ada", email="ada@example.test", profile="user")
    rejected = _submit("r.example.test")
    services.reject_request(rejected, agent=agent, reason="no")

    def listed(**params):
        response = agent_client.get(reverse("agent:request_list"), params)
        return {r.pk for r in response.context["requests"]}

    assert listed(status="pending") == {server.pk, user.pk}
    assert listed(status="rejected") == {rejected.pk}
    assert listed(profile="user") == {user.pk}
    assert listed(profile="server", status="pending") == {server.pk}


def test_list_search(agent_client, ca, agent):
    """Search opens a request by ID or certificate serial, and lists by subject or email."""
    wanted = _submit("needle.example.test", email="Needle@Example.test")
    _submit("hay.example.test", email="hay@example.test")
    cert = services.approve_request(wanted, agent=agent)

    def listed(q):
        response = agent_client.get(reverse("agent:request_list"), {"q": q})
        return [r.pk for r in response.context["requests"]]

    def opened(q):
        return agent_client.get(reverse("agent:request_list"), {"q": q})["Location"]

    assert opened(wanted.public_id.lower()) == wanted.get_agent_url()
    assert opened(wanted.display_id) == wanted.get_agent_url()
    assert opened(cert.serial_colons) == wanted.get_agent_url()
    assert listed("needle.example") == [wanted.pk]
    assert listed("needle@example.test") == [wanted.pk]
    assert listed("nobody@example.test") == []


def test_list_paginates_without_counting(agent_client, ca, django_assert_max_num_queries):
    """Pages hold 50 rows, link to the next one, and never COUNT(*) the requests table."""
    made = [_submit(csr=make_csr(cn="many.example.test")) for _ in range(53)]
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(8):
        first = agent_client.get(reverse("agent:request_list"))
    # The expiring counts are a COUNT over a capped subquery of certificates (LIMIT 1001,
    # whose renewal probe names the requests table): allowed; an uncapped one is not.
    counting = [
        q["sql"]
        for q in queries.captured_queries
        if "COUNT(" in q["sql"].upper()
        and "certificaterequest" in q["sql"]
        and f"LIMIT {expiry.COUNT_CAP + 1}" not in q["sql"]
    ]
    assert counting == []
    assert len(first.context["requests"]) == 50
    assert first.context["has_next"]
    assert "Older" in first.content.decode()
    second = agent_client.get(reverse("agent:request_list"), {"page": 2})
    assert [r.pk for r in second.context["requests"]] == [r.pk for r in made[2::-1]]
    assert not second.context["has_next"]
    assert "Newer" in second.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"profile": "<script>"},
        {"page": "abc"},
        {"page": "-3"},
        {"page": str(10**30)},
        {"q": "x" * 1000},
    ],
)
def test_list_survives_hostile_parameters(agent_client, pending_request, params):
    """Bad filter values never make a 500."""
    assert agent_client.get(reverse("agent:request_list"), params).status_code == 200


def test_list_keeps_valid_filters_beside_a_bad_one(agent_client, ca):
    """A bad status value is reported while the search still applies."""
    wanted = _submit("needle.example.test")
    _submit("hay.example.test")
    response = agent_client.get(reverse("agent:request_list"), {"status": "bogus", "q": "needle"})
    assert [r.pk for r in response.context["requests"]] == [wanted.pk]
    assert "Select a valid choice" in response.content.decode()


# --- find ---------------------------------------------------------------------------


def test_find_by_request_id(agent_client, pending_request):
    """The old Find address still opens the request given its ID in any form."""
    response = agent_client.get(
        reverse("agent:find"), {"q": pending_request.display_id.lower()}, follow=True
    )
    assert response.redirect_chain[-1][0] == pending_request.get_agent_url()


def test_find_by_serial(agent_client, issued_request):
    """The old Find address still opens the request of a certificate given its serial."""
    serial = issued_request.certificate.serial_colons
    response = agent_client.get(reverse("agent:find"), {"q": serial}, follow=True)
    assert response.redirect_chain[-1][0] == issued_request.get_agent_url()


@pytest.mark.parametrize("q", ["0" * 20, "abcdef", "no such thing"])
def test_find_not_found_returns_to_list(agent_client, pending_request, q):
    """An unknown ID or serial goes back to the list, which says what was searched."""
    response = agent_client.get(reverse("agent:find"), {"q": q}, follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("agent:request_list"))
    assert "No request matches" in response.content.decode()
    assert "request IDs, certificate serials, requester emails" in response.content.decode()


# --- details ------------------------------------------------------------------------


def test_request_detail_shows_everything(agent_client, ca):
    """The details page shows the requester, the parsed CSR, the history and the forms."""
    req = services.submit_request(
        profile="server",
        csr=make_csr(cn="www.example.test"),
        requester_email="admin@example.test",
        requester_name="Server Admin",
        note="for the shop",
        extra_hostnames=["api.example.test"],
        ip="192.0.2.9",
    )
    html = agent_client.get(req.get_agent_url()).content.decode()
    for text in [
        req.display_id,
        "admin@example.test",
        "Server Admin",
        "for the shop",
        "192.0.2.9",
        "CN=www.example.test",
        "EC P-256 (256 bits)",
        "verifies",
        req.public_key_sha256,
        "Request submitted",
        "DNS:api.example.test\nDNS:www.example.test",
        "Approve and issue",
        "Reject",
        "Cancel request",
    ]:
        assert text in html, text


def test_request_detail_ids_are_unique(agent_client, pending_request):
    """The three action forms on the details page do not share element IDs."""
    html = agent_client.get(pending_request.get_agent_url()).content.decode()
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_request_detail_unknown_is_404(agent_client, db):
    """An unknown request ID is a 404 for agents too."""
    assert agent_client.get(reverse("agent:request_detail", args=["0" * 20])).status_code == 404


def test_request_detail_of_decided_request_has_no_forms(agent_client, issued_request, agent):
    """A complete request shows who acted and links the certificate, without action forms."""
    html = agent_client.get(issued_request.get_agent_url()).content.decode()
    assert "Approve and issue" not in html
    assert agent.username in html
    assert reverse("agent:certificate_issued", args=[issued_request.public_id]) in html


# --- approve ------------------------------------------------------------------------


def test_approve(agent_client, pending_request, agent):
    """Approving issues the certificate and goes to the certificate issued page."""
    url = reverse("agent:approve", args=[pending_request.public_id])
    response = agent_client.post(url, {"sans": "DNS:www.example.test", "validity_days": ""})
    pending_request.refresh_from_db()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "agent:certificate_issued", args=[pending_request.public_id]
    )
    assert pending_request.status == Status.COMPLETE
    assert pending_request.acted_by == agent
    event = AuditEvent.objects.get(action="request_approved")
    assert event.ip == "127.0.0.1"
    assert event.details["edited_sans"] is False


def test_approve_with_validity_and_edited_sans(agent_client, pending_request):
    """The agent's validity and SAN edits (bare names accepted) reach the certificate."""
    url = reverse("agent:approve", args=[pending_request.public_id])
    agent_client.post(
        url, {"validity_days": "30", "sans": "DNS:www.example.test\nshop.example.test, 192.0.2.1"}
    )
    cert = Certificate.objects.get()
    assert cert.sans == ["DNS:www.example.test", "DNS:shop.example.test", "IP:192.0.2.1"]
    assert cert.not_after - cert.not_before == dt.timedelta(days=30, minutes=1)
    assert AuditEvent.objects.get(action="request_approved").details["edited_sans"] is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"validity_days": "500"}, "validity must be between 1 and 200 days"),
        ({"validity_days": "0"}, "greater than or equal to 1"),
        ({"validity_days": "ten"}, "Enter a whole number."),
        ({"sans": "email:x@example.test"}, "names only hostnames and IPs"),
        ({"sans": "bad..host"}, "empty label"),
        ({"sans": ""}, "needs at least one DNS name or IP address"),
    ],
)
def test_approve_refusals_reshow_the_form(agent_client, pending_request, data, message):
    """Bad validity or SANs re-show the details page with the message and change nothing."""
    url = reverse("agent:approve", args=[pending_request.public_id])
    response = agent_client.post(url, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING
    assert Certificate.objects.count() == 0


def test_double_approval_is_refused(agent_client, pending_request):
    """A second approval says the request is complete and issues nothing more."""
    url = reverse("agent:approve", args=[pending_request.public_id])
    agent_client.post(url)
    response = agent_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == pending_request.get_agent_url()
    assert (
        f"request {pending_request.display_id} is complete, so it cannot be approved"
        in response.content.decode()
    )
    assert Certificate.objects.count() == 1
    assert AuditEvent.objects.filter(action="request_approved").count() == 1


def test_approve_without_ca_key_reports(agent_client, pending_request, ca):
    """When the CA key cannot be opened the agent gets a message, not a 500."""
    key_path(ca).unlink()
    keys.reset()
    url = reverse("agent:approve", args=[pending_request.public_id])
    response = agent_client.post(url, follow=True)
    assert "cannot issue" in response.content.decode()
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


# --- reject and cancel --------------------------------------------------------------


def test_reject(agent_client, pending_request, client):
    """Rejecting records the reason, which the requester then sees."""
    url = reverse("agent:reject", args=[pending_request.public_id])
    response = agent_client.post(url, {"reason": "That host is not ours."}, follow=True)
    assert "rejected" in response.content.decode()
    pending_request.refresh_from_db()
    assert pending_request.status == Status.REJECTED
    assert pending_request.agent_note == "That host is not ours."
    assert AuditEvent.objects.get(action="request_rejected").ip == "127.0.0.1"


@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_needs_reason(agent_client, pending_request, reason):
    """A rejection without a reason is refused on the form."""
    url = reverse("agent:reject", args=[pending_request.public_id])
    response = agent_client.post(url, {"reason": reason})
    assert response.status_code == 400
    assert "A reason is required to reject a request." in response.content.decode()
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_cancel(agent_client, pending_request):
    """Canceling withdraws the request."""
    url = reverse("agent:cancel", args=[pending_request.public_id])
    agent_client.post(url, {"note": "duplicate"})
    pending_request.refresh_from_db()
    assert pending_request.status == Status.CANCELED
    assert pending_request.agent_note == "duplicate"


def test_reject_after_cancel_is_refused(agent_client, pending_request, agent):
    """A decided request cannot be rejected; the message says why."""
    services.cancel_request(pending_request, agent=agent)
    url = reverse("agent:reject", args=[pending_request.public_id])
    response = agent_client.post(url, {"reason": "late"}, follow=True)
    assert "is canceled, so it cannot be rejected" in response.content.decode()


@pytest.mark.parametrize("name", ["agent:approve", "agent:reject", "agent:cancel"])
def test_actions_on_unknown_request_are_404(agent_client, db, name):
    """A decision on an unknown request ID is a 404."""
    response = agent_client.post(reverse(name, args=["0" * 20]), {"reason": "x"})
    assert response.status_code == 404


# --- certificate issued -------------------------------------------------------------


def test_certificate_issued_page(agent_client, issued_request, ca):
    """The issued page shows the IDs, PEM with Copy, a summary, downloads and Delivery."""
    cert = issued_request.certificate
    html = agent_client.get(
        reverse("agent:certificate_issued", args=[issued_request.public_id])
    ).content.decode()
    for text in [
        issued_request.display_id,
        f'data-copy-text="{cert.serial_colons}"',
        "CN=done.example.test",
        "DNS:done.example.test",
        cert.pem.strip().splitlines()[1],
        'data-copy="certificate-pem"',
        "CN=Test Root CA",
        "serverAuth",
        "Digital signature",
        "EC P-256",
        cert.serial_colons,
        'id="delivery"',
    ]:
        assert text in html, text
    for fmt in ("pem", "der", "p7b", "chain"):
        assert reverse("certificate_download", args=[cert.serial, fmt]) in html
    assert x509.load_pem_x509_certificate(cert.pem.encode()).serial_number == int(cert.serial, 16)


def test_certificate_issued_for_pending_request_redirects(agent_client, pending_request):
    """A request without a certificate sends the agent back to its details."""
    url = reverse("agent:certificate_issued", args=[pending_request.public_id])
    response = agent_client.get(url)
    assert response["Location"] == pending_request.get_agent_url()


def test_renewal_details_explain_the_missing_csr(agent_client, pending_request, agent):
    """A renewal by serial shows whose key it reuses instead of a CSR error."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    renewal = services.submit_renewal(cert)
    page = agent_client.get(reverse("agent:request_detail", args=[renewal.public_id]))
    text = page.content.decode().replace("<wbr>", "")
    assert page.status_code == 200
    assert "the key of certificate" in text and cert.serial_colons in text
    assert "The CSR is empty" not in text
