"""Agent certificates: an agent asks for their own, another agent approves it (never the
agent themself, on any surface), it is linked on approval or by the command, and a linked,
valid certificate from this portal logs its agent in; everything else is refused, audited."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.urls import reverse

from requests_app import agent_auth, pki, services
from requests_app.models import AgentCertificate, AuditEvent, Certificate, CertificateRequest
from tests.helpers.agent_certs import (
    backdated_agent_certificate,
    escaped,
    issue_agent_certificate,
    make_agent,
    stranger_certificate,
)
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

pytestmark = pytest.mark.usefixtures("empty_cache")

PROXY = "10.9.8.7"
HEADER = "HTTP_X_SSL_CLIENT_CERT"


@pytest.fixture
def trusted_proxy(settings):
    settings.TRUSTED_PROXIES = [PROXY]


@pytest.fixture
def bob(db):
    return make_agent("bob")


def _own_request(user, **kwargs):
    return services.request_agent_certificate(user=user, csr=make_csr(cn="Agent"), **kwargs)


def _refusals(reason: str | None = None):
    rows = AuditEvent.objects.filter(action="agent_certificate_login_refused")
    return rows.filter(details__reason=reason) if reason else rows


# --- requesting, approving, linking ---------------------------------------------------


def test_own_request_enters_the_queue_marked_for_the_agent(ca, agent):
    """The request names the agent, their email, the agent profile, and is audited as theirs."""
    req = _own_request(agent, ip="192.0.2.1")
    assert req.status == CertificateRequest.Status.PENDING
    assert (req.profile, req.agent_for, req.requester_email) == ("agent", agent, agent.email)
    assert req.requested_sans == [f"email:{agent.email}"]
    event = AuditEvent.objects.get(action="request_submitted", request=req)
    assert event.actor == agent
    assert event.details["agent_for"] == agent.username


def test_a_non_agent_cannot_request_an_agent_certificate(ca, django_user_model):
    """Only an active agent asks for a login certificate for themself."""
    outsider = django_user_model.objects.create_user("eve", "eve@example.test", "pw-123456789")
    with pytest.raises(services.InvalidRequest):
        _own_request(outsider)
    assert not CertificateRequest.objects.exists()


def test_another_agent_approves_and_the_certificate_is_linked(ca, agent, bob):
    """Bob's approval issues the certificate and links it to the agent who asked, audited."""
    req = _own_request(agent)
    cert = services.approve_request(req, agent=bob)
    link = AgentCertificate.objects.get(certificate=cert)
    assert (link.user, link.linked_by) == (agent, bob)
    event = AuditEvent.objects.get(action="agent_certificate_linked")
    assert (event.actor, event.certificate, event.details["via"]) == (bob, cert, "approval")


def test_service_refuses_self_approval_and_writes_an_audit_row(ca, agent):
    """The agent's own approval is refused, nothing is issued, and the refusal is audited."""
    req = _own_request(agent)
    with pytest.raises(services.NotAllowed, match="own agent certificate"):
        services.approve_request(req, agent=agent)
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING
    assert not AgentCertificate.objects.exists()
    event = AuditEvent.objects.get(action="approval_refused")
    assert (event.actor, event.request, event.details["reason"]) == (
        agent,
        req,
        "own_agent_certificate",
    )


def test_nobody_at_all_cannot_approve_an_agent_certificate(ca, agent):
    """An approval without a named agent (a command without --agent) is refused too."""
    req = _own_request(agent)
    with pytest.raises(services.NotAllowed, match="another agent"):
        services.approve_request(req, agent=None)
    assert AuditEvent.objects.get(action="approval_refused").details["reason"] == "no_agent"


def test_agent_page_refuses_self_approval(client, ca, agent):
    """A POST to approve one's own agent certificate on the agent page changes nothing."""
    req = _own_request(agent)
    login_verified(client, agent)
    response = client.post(reverse("agent:approve", args=[req.public_id]), {}, follow=True)
    assert "own agent certificate" in response.content.decode()
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING
    assert AuditEvent.objects.filter(action="approval_refused", actor=agent).count() == 1


def test_admin_action_refuses_self_approval(client, ca, agent, django_user_model):
    """The admin's approve action reports the refusal and issues nothing."""
    agent.is_superuser = True  # the admin changelist needs view permission on requests
    agent.save()
    req = _own_request(agent)
    login_verified(client, agent)
    response = client.post(
        reverse("admin:requests_app_certificaterequest_changelist"),
        {"action": "approve_selected", "_selected_action": [req.pk]},
        follow=True,
    )
    assert "own agent certificate" in response.content.decode()
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING


def test_command_refuses_self_approval_and_anonymous_approval(ca, agent, bob):
    """approve_request --agent OWNER and approve_request without --agent are refused; --agent
    with another agent works and links."""
    req = _own_request(agent)
    with pytest.raises(CommandError, match="own agent certificate"):
        call_command("approve_request", req.public_id, agent=agent.username, stdout=StringIO())
    with pytest.raises(CommandError, match="another agent"):
        call_command("approve_request", req.public_id, stdout=StringIO())
    out = StringIO()
    call_command("approve_request", req.public_id, agent=bob.username, stdout=out)
    serial = out.getvalue().strip().splitlines()[-1]
    assert (
        AgentCertificate.objects.get(certificate=Certificate.objects.by_serial(serial)).user
        == agent
    )


def test_bulk_approval_skips_the_agents_own_request(ca, agent, pending_request):
    """approve_all_pending by the requesting agent approves the rest and refuses theirs."""
    own = _own_request(agent)
    result = services.approve_all_pending(agent=agent)
    assert [c.request for c in result.approved] == [pending_request]
    assert [public_id for public_id, _ in result.refused] == [own.public_id]
    own.refresh_from_db()
    assert own.status == CertificateRequest.Status.PENDING
    assert AuditEvent.objects.filter(action="approval_refused", request=own).exists()


def test_bulk_approval_by_another_agent_links(ca, agent, bob):
    """The bulk path links an agent's certificate to its owner too."""
    own = _own_request(agent)
    result = services.approve_all_pending(agent=bob)
    assert AgentCertificate.objects.get(certificate=result.approved[0]).user == agent
    assert own.pk == result.approved[0].request.pk


def test_server_made_key_for_an_agent(ca, agent, bob, client, settings):
    """With a key made here (whatever SERVER_KEY_PROFILES says), the agent gets a .p12 once
    after another agent approved, and the certificate is linked to them."""
    settings.SERVER_KEY_PROFILES = ["user"]
    settings.SERVER_KEY_TYPE = "p256"
    login_verified(client, agent)
    passphrase = "correct horse battery staple"
    response = client.post(
        reverse("agent:request_with_server_key"),
        {"passphrase": passphrase, "passphrase_confirm": passphrase, "note": ""},
    )
    assert response.status_code == 302
    req = CertificateRequest.objects.get(agent_for=agent)
    assert req.encrypted_private_key
    cert = services.approve_request(req, agent=bob)
    p12 = client.post(
        reverse("certificate_pkcs12", args=[cert.serial]),
        {"request_id": req.public_id, "passphrase": passphrase, "pkcs12_format": "modern"},
    )
    assert p12["Content-Type"] == "application/x-pkcs12"
    assert AgentCertificate.objects.get(certificate=cert).user == agent


def test_csr_page_submits_and_lists_the_request(ca, agent, client):
    """The agent page takes a CSR, and lists the request and (later) the linked certificate."""
    login_verified(client, agent)
    response = client.post(reverse("agent:request_with_csr"), {"csr": make_csr(cn="Me")})
    assert response.status_code == 302
    req = CertificateRequest.objects.get(agent_for=agent)
    page = client.get(reverse("agent:my_certificates")).content.decode()
    assert req.display_id in page
    bad = client.post(reverse("agent:request_with_csr"), {"csr": "not a CSR"})
    assert bad.status_code == 400
    assert CertificateRequest.objects.count() == 1


def test_self_service_pages_are_for_agents_only(client, ca, django_user_model):
    """Anonymous GETs go to the login page; a logged-in non-agent gets 403 and submits nothing."""
    url = reverse("agent:my_certificates")
    assert client.get(url).status_code == 302
    outsider = django_user_model.objects.create_user("eve", "eve@example.test", "pw-123456789")
    login_verified(client, outsider)
    assert client.get(url).status_code == 403
    response = client.post(reverse("agent:request_with_csr"), {"csr": make_csr(cn="Eve")})
    assert response.status_code == 403
    assert not CertificateRequest.objects.exists()


def test_unlink_own_certificate_only(client, ca, agent, bob):
    """An agent unlinks their own certificate (audited); another agent's answers 404."""
    cert, _ = issue_agent_certificate(agent, bob)
    login_verified(client, bob)
    url = reverse("agent:unlink_certificate", args=[cert.serial])
    assert client.post(url).status_code == 404
    assert AgentCertificate.objects.filter(certificate=cert).exists()
    login_verified(client, agent)
    assert client.post(url).status_code == 302
    assert not AgentCertificate.objects.filter(certificate=cert).exists()
    event = AuditEvent.objects.get(action="agent_certificate_unlinked")
    assert (event.actor, event.details["user"]) == (agent, agent.username)


def test_link_command(ca, agent, bob, pending_request):
    """link_agent_certificate links an agent certificate issued otherwise (audited), and
    refuses a server certificate, a second link, a non-agent and a certificate requested for
    somebody else."""
    cert = services.issue_certificate(
        profile="agent", csr=make_csr(cn="Agent One"), requester_email=agent.email
    )
    out = StringIO()
    call_command("link_agent_certificate", agent.username, cert.serial, stdout=out)
    assert AgentCertificate.objects.get(certificate=cert).user == agent
    assert AuditEvent.objects.get(action="agent_certificate_linked").details["via"] == "link"
    with pytest.raises(CommandError, match="already linked"):
        call_command("link_agent_certificate", bob.username, cert.serial)
    server = services.approve_request(pending_request, agent=bob)
    with pytest.raises(CommandError, match="only agent certificates"):
        call_command("link_agent_certificate", agent.username, server.serial)
    with pytest.raises(CommandError, match="no user named"):
        call_command("link_agent_certificate", "nobody", cert.serial)
    owned, _ = issue_agent_certificate(bob, agent)
    AgentCertificate.objects.filter(certificate=owned).delete()
    with pytest.raises(CommandError, match="requested by agent 'bob'"):
        call_command("link_agent_certificate", agent.username, owned.serial)
    with pytest.raises(CommandError, match="linked to 'agent1', not 'bob'"):
        call_command("link_agent_certificate", "bob", cert.serial, unlink=True)
    call_command("link_agent_certificate", agent.username, cert.serial, unlink=True, stdout=out)
    assert not AgentCertificate.objects.filter(certificate=cert).exists()


def test_link_refuses_revoked_and_non_agents(ca, agent, bob, django_user_model):
    """A revoked certificate, or an account that is not an active agent, is never linked."""
    cert = services.issue_certificate(
        profile="agent", csr=make_csr(cn="Agent"), requester_email=agent.email
    )
    outsider = django_user_model.objects.create_user("eve", "eve@example.test", "pw-123456789")
    with pytest.raises(services.InvalidRequest, match="not an active agent"):
        services.link_agent_certificate(cert, user=outsider, actor=None)
    services.revoke_certificate(cert, reason="keyCompromise", actor=bob)
    with pytest.raises(services.InvalidTransition, match="revoked"):
        services.link_agent_certificate(cert, user=agent, actor=None)
    assert not AgentCertificate.objects.exists()


# --- certificate login (header from a trusted proxy) -----------------------------------


def _login(client, cert_header: str | None, *, peer: str = PROXY, next_url: str = ""):
    extra = {"REMOTE_ADDR": peer}
    if cert_header is not None:
        extra[HEADER] = cert_header
    data = {"next": next_url} if next_url else {}
    return client.post(reverse("certificate_login"), data, **extra)


def _verified_session_user(client):
    session = Session.objects.get(session_key=client.cookies["sessionid"].value).get_decoded()
    return session.get("_auth_user_id"), session.get(agent_auth.SESSION_KEY)


def test_linked_agent_certificate_logs_in_as_both_factors(client, ca, agent, bob, trusted_proxy):
    """A valid linked agent certificate from a trusted proxy logs its agent in, marks the
    session verified by "certificate", audits it, and reaches an agent page."""
    cert, _ = issue_agent_certificate(agent, bob)
    response = _login(client, escaped(cert))
    assert response.status_code == 302
    assert response["Location"] == reverse("agent:request_list")
    user_id, mark = _verified_session_user(client)
    assert (user_id, mark) == (str(agent.pk), {"user": agent.pk, "method": "certificate"})
    event = AuditEvent.objects.get(action="agent_certificate_login")
    assert (event.actor, event.certificate, event.ip) == (agent, cert, PROXY)
    assert event.details["source"] == "proxy"
    assert client.get(reverse("agent:request_list")).status_code == 200


def test_login_follows_a_local_next_only(client, ca, agent, bob, trusted_proxy):
    """next= is followed when it is on this site, and ignored when it points elsewhere."""
    cert, _ = issue_agent_certificate(agent, bob)
    assert _login(client, escaped(cert), next_url="/agent/find/")["Location"] == "/agent/find/"
    response = _login(client, escaped(cert), next_url="https://evil.example/")
    assert response["Location"] == reverse("agent:request_list")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("revoked", "revoked"),
        ("on_hold", "on_hold"),
        ("expired", "expired"),
        ("other_ca", "other_ca"),
        ("user_profile", "wrong_profile"),
        ("not_linked", "not_linked"),
        ("inactive", "inactive"),
        ("not_an_agent", "not_an_agent"),
        ("garbage", "unreadable"),
        ("none", "no_certificate"),
    ],
)
def test_refusals_name_their_reason(client, ca, agent, bob, trusted_proxy, case, reason):
    """Each kind of bad certificate is refused with a 403 page and an audit row naming why,
    and nobody is logged in."""
    cert, _ = issue_agent_certificate(agent, bob)
    header = escaped(cert)
    if case == "revoked":
        services.revoke_certificate(cert, reason="keyCompromise", actor=bob)
    elif case == "on_hold":
        services.revoke_certificate(cert, reason=services.CERTIFICATE_HOLD, actor=bob)
    elif case == "expired":
        expired, _ = backdated_agent_certificate(agent)
        header = escaped(expired)
    elif case == "other_ca":
        header = escaped(stranger_certificate()[0])
    elif case == "user_profile":
        user_cert = services.issue_certificate(
            profile="user", csr=make_csr(cn="Ada"), requester_email="ada@example.test"
        )
        header = escaped(user_cert)
    elif case == "not_linked":
        services.unlink_agent_certificate(cert, actor=bob)
    elif case == "inactive":
        agent.is_active = False
        agent.save()
    elif case == "not_an_agent":
        agent.groups.clear()
    elif case == "garbage":
        header = "-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----"
    elif case == "none":
        header = ""  # nginx sends the header empty when no certificate was presented
    response = _login(client, header)
    assert response.status_code == 403
    assert "Certificate login refused" in response.content.decode()
    assert "_auth_user_id" not in client.session
    event = _refusals().get()
    assert event.details["reason"] == reason
    assert event.actor is None and event.ip == PROXY
    assert not AuditEvent.objects.filter(action="agent_certificate_login").exists()


def test_header_from_an_untrusted_peer_is_ignored_and_audited(client, ca, agent, bob, settings):
    """A forged header straight from a client (not a trusted proxy) logs nobody in, even with
    a perfectly good agent certificate in it; the attempt is audited."""
    settings.TRUSTED_PROXIES = [PROXY]
    cert, _ = issue_agent_certificate(agent, bob)
    response = _login(client, escaped(cert), peer="203.0.113.66")
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    event = _refusals().get()
    assert (event.details["reason"], event.ip) == ("untrusted_proxy", "203.0.113.66")
    assert event.certificate is None  # the forged value was not even read


def test_configured_header_name(client, ca, agent, bob, trusted_proxy, settings):
    """CLIENT_CERT_HEADER chooses the header; the default one is then ignored."""
    settings.CLIENT_CERT_HEADER = "X-Client-Cert"
    cert, _ = issue_agent_certificate(agent, bob)
    assert _login(client, escaped(cert)).status_code == 403
    response = client.post(
        reverse("certificate_login"), REMOTE_ADDR=PROXY, HTTP_X_CLIENT_CERT=escaped(cert)
    )
    assert response.status_code == 302


def test_get_shows_the_page_and_logs_nobody_in(client, ca, agent, bob, trusted_proxy):
    """GET only shows the button (a login is a POST with a CSRF token); the password login
    page links to it."""
    cert, _ = issue_agent_certificate(agent, bob)
    response = client.get(
        reverse("certificate_login"), REMOTE_ADDR=PROXY, **{HEADER: escaped(cert)}
    )
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert reverse("certificate_login") in client.get(reverse("login")).content.decode()


def test_login_requires_csrf(ca, agent, bob, trusted_proxy):
    """A cross-site POST without the CSRF token is refused before the certificate is read."""
    from django.test import Client

    cert, _ = issue_agent_certificate(agent, bob)
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        reverse("certificate_login"), REMOTE_ADDR=PROXY, **{HEADER: escaped(cert)}
    )
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="agent_certificate_login").exists()


def test_certificate_login_is_rate_limited(client, ca, trusted_proxy, settings):
    """Beyond CERTIFICATE_LOGIN_RATE_LIMIT an address gets 429, and no more audit rows."""
    settings.CERTIFICATE_LOGIN_RATE_LIMIT = "2/300"
    for _ in range(2):
        assert _login(client, "").status_code == 403
    assert _login(client, "").status_code == 429
    assert _refusals().count() == 2


def test_unknown_certificate_signed_by_our_ca(client, ca, agent, bob, trusted_proxy):
    """A certificate our CA's key signed but that the portal has no row for is refused."""
    cert, _ = backdated_agent_certificate(agent)
    header = escaped(cert)
    AgentCertificate.objects.filter(certificate=cert).delete()
    cert.delete()
    assert _login(client, header).status_code == 403
    assert _refusals().get().details["reason"] == "unknown_certificate"


def test_not_yet_valid_by_the_portals_clock(client, ca, agent, bob, trusted_proxy, monkeypatch):
    """The portal judges validity by its own clock, not the proxy's."""
    cert, _ = issue_agent_certificate(agent, bob)
    monkeypatch.setattr(pki, "utcnow", lambda: cert.not_before - dt.timedelta(hours=1))
    assert _login(client, escaped(cert)).status_code == 403
    assert _refusals().get().details["reason"] == "not_yet_valid"
