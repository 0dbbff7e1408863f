"""Renewal on the pages: the certificate page's Renew, the renewal forms, the agent's view
of what a renewal changes, and the one click that revokes the superseded certificate; each
with the refusal an outsider meets."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from requests_app import links, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed
from tests.helpers.mfa import login_verified
from tests.helpers.renewal import dns, fresh, issued_server, issued_user

Status = CertificateRequest.Status

pytestmark = pytest.mark.usefixtures("empty_cache")


def _renew(client, cert, csr, **extra):
    return client.post(reverse("renew", args=[cert.serial]), {"csr": csr, **extra})


def test_the_certificate_page_offers_renew_and_later_shows_superseded(client, ca, agent):
    """A valid certificate's page links to Renew; once renewed, the (shared, cached) page
    says superseded and names the new certificate instead."""
    old, key = issued_server(agent)
    page = client.get(reverse("certificate_detail", args=[old.serial]))
    assert reverse("renew", args=[old.serial]) in page.content.decode()
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    cert = services.approve_request(req, agent=agent)
    page = client.get(reverse("certificate_detail", args=[old.serial])).content.decode()
    assert "superseded" in page and cert.serial_colons in page.replace("<wbr>", "")
    assert reverse("renew", args=[old.serial]) not in page


def test_renewing_from_the_signed_link(client, ca, agent, mailoutbox):
    """The reminder's link leads to the page; Renew with a new CSR saves a renewal that
    waits for the requester's mailbox, and the page names the address only masked."""
    old, _ = issued_server(agent)
    page = client.get(links.retrieval_url(old).removeprefix("http://testserver"), follow=True)
    assert reverse("renew", args=[old.serial]) in page.content.decode()
    form = client.get(reverse("renew", args=[old.serial]))
    assert form.status_code == 200
    assert "o***@example.test" in form.content.decode()
    assert "ops@example.test" not in form.content.decode()
    response = _renew(client, old, make_csr(cn="www.example.test"), requester_email="eve@evil.test")
    assert response.status_code == 302
    req = CertificateRequest.objects.get(renewal_of=old)
    assert response["Location"] == req.get_absolute_url()
    assert req.requester_email == "ops@example.test"  # a posted address is ignored
    assert req.status == Status.AWAITING_EMAIL
    assert req.submitter_ip == "127.0.0.1"


def test_the_form_shows_the_refusals(client, ca, agent):
    """Other names, a revoked certificate and a bad CSR come back as the form's errors."""
    old, key = issued_server(agent)
    response = _renew(client, old, make_csr(cn="evil.example.test"))
    assert response.status_code == 400
    assert "also names DNS:evil.example.test" in response.content.decode()
    response = _renew(client, old, "not a CSR")
    assert response.status_code == 400
    services.revoke_certificate(old, reason="keyCompromise", actor=agent)
    response = _renew(client, old, make_csr(cn=None, key=key))
    assert response.status_code == 400
    assert "is revoked, so it cannot be renewed" in response.content.decode()
    assert not CertificateRequest.objects.filter(renewal_of=old).exists()


def test_an_unknown_serial_is_not_found(client, ca):
    """Renewing a serial that names nothing is a 404 that reveals nothing."""
    for serial in ("abcdef0123456789", "not-hex"):
        assert _renew(client, Certificate(serial=serial), make_csr()).status_code == 404
        assert client.get(reverse("renew", args=[serial])).status_code == 404


def test_renewals_from_one_address_are_throttled(client, ca, agent, settings):
    """Each renewal counts against ENROLL_RATE_LIMIT for the client address."""
    settings.ENROLL_RATE_LIMIT = "2/3600"
    old, _ = issued_user(agent)
    codes = [_renew(client, old, make_csr(cn="Ada Lovelace")).status_code for _ in range(3)]
    assert codes == [302, 302, 429]
    assert CertificateRequest.objects.filter(renewal_of=old).count() == 2


def test_a_second_renewal_in_the_queue_is_refused(client, ca, agent):
    """With a renewal waiting for an agent, the page refuses another without naming it."""
    old, key = issued_server(agent)
    first, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    response = _renew(client, old, make_csr(cn=None))
    assert response.status_code == 400
    body = response.content.decode()
    assert "already waiting for an agent" in body
    assert first.public_id not in body and first.display_id not in body


def test_the_server_key_renewal_page(client, ca, agent, settings):
    """A personal certificate renews with a new passphrase; the server profile has no such page."""
    settings.SERVER_KEY_TYPE = "p256"
    old, _ = issued_user(agent)
    url = reverse("renew_server_key", args=[old.serial])
    assert client.get(url).status_code == 200
    response = client.post(
        url, {"passphrase": "seven purple otters", "passphrase_confirm": "seven purple otters"}
    )
    assert response.status_code == 302
    req = CertificateRequest.objects.get(renewal_of=old)
    assert req.encrypted_private_key and req.awaits_email
    server_old, _ = issued_server(agent, names=("k.example.test",))
    assert client.get(reverse("renew_server_key", args=[server_old.serial])).status_code == 404


def test_the_agent_sees_what_the_renewal_changes(client, ca, agent):
    """Request detail shows the renewed serial, a different key and the names removed."""
    old, _ = issued_server(agent)
    req, _ = services.submit_web_renewal(
        old, csr=make_csr(cn="www.example.test", sans=dns("www.example.test"))
    )
    confirmed(req)
    page = login_verified(client, agent).get(req.get_agent_url()).content.decode()
    assert "Renewal of certificate" in page and old.serial_colons in page.replace("<wbr>", "")
    assert "different key" in page
    assert "DNS:api.example.test" in page.split('id="renewal-removed"')[1].split("</td>")[0]
    assert "none" in page.split('id="renewal-added"')[1].split("</td>")[0]


def test_one_click_revokes_the_superseded_certificate(client, ca, agent):
    """The issued page's button revokes the old certificate with reason superseded, audited."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    cert = services.approve_request(req, agent=agent)
    login_verified(client, agent)
    issued = client.get(reverse("agent:certificate_issued", args=[req.public_id])).content.decode()
    assert "Revoke the old certificate (superseded)" in issued
    response = client.post(reverse("agent:revoke_superseded", args=[req.public_id]))
    assert response.status_code == 302
    old = fresh(old)
    assert (old.status, old.revocation_reason) == ("revoked", "superseded")
    row = AuditEvent.objects.get(certificate=old, action="certificate_revoked")
    assert row.actor == agent and row.details["reason"] == "superseded"
    assert fresh(cert).status == "valid"
    again = client.post(reverse("agent:revoke_superseded", args=[req.public_id]), follow=True)
    assert "already revoked" in again.content.decode()


def test_the_one_click_needs_an_agent_the_second_factor_and_csrf(
    client, ca, agent, django_user_model
):
    """Anonymous, a non-agent, an agent without the second factor, a forged POST (no CSRF
    token), and a request that is no renewal: nothing is revoked."""
    old, key = issued_server(agent)
    req, _ = services.submit_web_renewal(old, csr=make_csr(cn=None, key=key))
    services.approve_request(req, agent=agent)
    url = reverse("agent:revoke_superseded", args=[req.public_id])
    assert client.post(url).status_code == 403
    outsider = django_user_model.objects.create_user("mallory", "m@example.test", "pw-mallory-1")
    assert login_verified(Client(), outsider).post(url).status_code == 403
    half = Client()
    half.force_login(agent)  # the password, not the second factor
    assert half.post(url).status_code == 403
    forged = login_verified(Client(enforce_csrf_checks=True), agent)
    assert forged.post(url).status_code == 403
    plain = services.approve_request(
        services.submit_request(
            profile="server", csr=make_csr(cn="p.example.test"), requester_email="p@example.test"
        ).public_id,
        agent=agent,
    )
    other = login_verified(Client(), agent).post(
        reverse("agent:revoke_superseded", args=[plain.request.public_id]), follow=True
    )
    assert "nothing was revoked" in other.content.decode()
    assert fresh(old).status == "valid"
