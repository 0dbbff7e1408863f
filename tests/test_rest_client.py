"""Dogtag's own Python client (dogtag-pki, pki.cert.CertClient) drives a live portal through
the REST API: templates, enrollment, the agent's review and approval with its nonce,
certificates, search, revocation and hold release, and its typed exceptions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from requests_app import pki as engine
from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from requests_app.rest import ids
from tests.helpers.mailbox import confirmed
from tests.helpers.mfa import add_totp_device, login_verified
from tests.helpers.rest import (
    PKI_MISSING,
    agent_secret,
    cert_client,
    needs_openssl,
    needs_pki,
    openssl_csr,
    openssl_verify,
)

if not PKI_MISSING:
    import pki

pytestmark = [needs_pki, needs_openssl, pytest.mark.django_db(transaction=True)]

Status = CertificateRequest.Status


@pytest.fixture(autouse=True)
def _rest_settings(settings, empty_cache):
    # The live server is plain http, and requests sends no Secure cookie over http.
    settings.SESSION_COOKIE_SECURE = False


@pytest.fixture
def device(agent):
    return add_totp_device(agent)


@pytest.fixture
def agent_api(live_server, agent, device):
    """A CertClient authenticated as the agent: password + current TOTP code."""
    return cert_client(live_server.url, user="agent1", secret=agent_secret(device))


def _enroll(client, tmp_path, *, profile="caServerCert", cn="host1.example.test", email=None):
    inputs = {
        "cert_request_type": "pkcs10",
        "cert_request": openssl_csr(tmp_path, cn=cn, email=email, name=cn),
        "requestor_name": "Tess Ter",
        "requestor_email": email or "ops@example.test",
    }
    request = client.create_enrollment_request(profile, inputs)
    return client.submit_enrollment_request(request).cert_request_info_list[0]


def test_enroll_review_approve_get_search_revoke_and_release(
    live_server, ca, agent, agent_api, tmp_path
):
    """The whole life of a server certificate through the client, and the IDs round-trip."""
    public = cert_client(live_server.url)
    templates = [t.profile_id for t in public.list_enrollment_templates()]
    assert {"caServerCert", "caUserCert", "server", "user"} <= set(templates)
    template = public.get_enrollment_template("caServerCert")
    names = {a.name for i in template.inputs for a in i.attributes}
    assert {"cert_request", "cert_request_type", "requestor_name", "requestor_email"} <= names

    info = _enroll(public, tmp_path)
    assert info.request_status == "pending"
    req = CertificateRequest.objects.get()
    assert (req.channel, req.status, req.requester_name) == ("rest", Status.PENDING, "Tess Ter")
    # Dogtag's decimal request ID in the URL, 0x-hex in JSON: both our public ID's 100 bits.
    assert info.request_id == str(ids.request_number(req.public_id))
    assert ids.public_id_of(int(info.request_id)) == req.public_id
    assert public.get_request(info.request_id).request_status == "pending"
    assert public.get_request(req.display_id).request_status == "pending"  # our own form too

    listed = agent_api.list_requests(request_status="pending")
    assert [r.request_id for r in listed.cert_request_info_list] == [info.request_id]
    review = agent_api.review_request(info.request_id)
    assert review.nonce and review.request_id == ids.request_hex(req)
    response = agent_api.approve_request(info.request_id, review)
    assert response.status_code == 204

    done = public.get_request(info.request_id)
    assert done.request_status == "complete"
    cert = Certificate.objects.get()
    assert done.cert_id == f"0x{cert.serial}"
    assert AuditEvent.objects.filter(action="request_approved", actor=agent).count() == 1

    data = public.get_cert(done.cert_id)
    assert data.serial_number == done.cert_id and data.status == "VALID"
    assert public.get_cert(int(cert.serial, 16)).serial_number == done.cert_id  # decimal
    verified = openssl_verify(tmp_path, engine.to_pem(ca.certificate), data.encoded)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert data.pkcs7_cert_chain.strip()

    found = public.list_certs(common_name="host1.example.test")
    assert [c.serial_number for c in found.cert_data_info_list] == [done.cert_id]
    assert public.list_certs(common_name="nobody.example.test").cert_data_info_list == []
    assert len(public.list_certs(status="VALID").cert_data_info_list) == 1

    held = agent_api.hold_cert(done.cert_id, comments="laptop missing")
    assert held.request_status == "complete"
    assert public.get_cert(done.cert_id).status == "REVOKED"
    released = agent_api.unrevoke_cert(done.cert_id)
    assert released.request_type == "unrevocation"
    cert.refresh_from_db()
    assert cert.status == Certificate.Status.VALID

    compromised = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    agent_api.revoke_cert(
        done.cert_id,
        revocation_reason="Key_Compromise",
        invalidity_date=int(compromised.timestamp() * 1000),
    )
    cert.refresh_from_db()
    assert (cert.status, cert.revocation_reason) == ("revoked", "keyCompromise")
    assert abs((cert.invalidity_date - compromised).total_seconds()) < 1
    with pytest.raises(pki.BadRequestException):  # final: nothing to release
        agent_api.unrevoke_cert(done.cert_id)
    with pytest.raises(pki.BadRequestException):  # not a CA certificate
        agent_api.revoke_ca_cert(done.cert_id, revocation_reason="Key_Compromise")
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"certificate_revoked", "certificate_hold_released"} <= actions


def test_enroll_cert_approves_as_the_agent_and_returns_the_certificate(
    live_server, ca, agent_api, tmp_path
):
    """enroll_cert (submit, approve with the review's nonce, get_request, get_cert) in one."""
    inputs = {
        "cert_request_type": "pkcs10",
        "cert_request": openssl_csr(tmp_path, cn="host2.example.test"),
        "requestor_email": "ops@example.test",
    }
    [result] = agent_api.enroll_cert("caServerCert", inputs)
    assert result.request.request_status == "complete"
    assert result.cert.subject_dn == "CN=host2.example.test"
    verified = openssl_verify(tmp_path, engine.to_pem(ca.certificate), result.cert.encoded)
    assert verified.returncode == 0, verified.stderr


def test_typed_exceptions(live_server, ca, agent_api, tmp_path, django_user_model):
    """Unknown request, unknown certificate, non-agent, second approval, stale nonce,
    unknown profile: each raises the client's own exception class."""
    public = cert_client(live_server.url)
    with pytest.raises(pki.RequestNotFoundException):
        public.get_request("12345")
    with pytest.raises(pki.CertNotFoundException):
        public.get_cert("0x1234")
    with pytest.raises(pki.BadRequestException):
        public.get_enrollment_template("caNoSuchCert")

    django_user_model.objects.create_user("clerk", "clerk@example.test", "clerk-pass-123")
    clerk = cert_client(live_server.url, user="clerk", secret="clerk-pass-123")
    with pytest.raises(pki.ForbiddenException):
        clerk.list_requests()

    info = _enroll(public, tmp_path)
    first = agent_api.review_request(info.request_id)
    second = agent_api.review_request(info.request_id)
    with pytest.raises(pki.ForbiddenException):  # replaced by the later review
        agent_api.approve_request(info.request_id, first)
    assert CertificateRequest.objects.get().status == Status.PENDING
    agent_api.approve_request(info.request_id, second)
    with pytest.raises(pki.BadRequestException):  # used already
        agent_api.approve_request(info.request_id, second)
    with pytest.raises(pki.BadRequestException):  # a fresh review: not pending any more
        agent_api.approve_request(info.request_id)
    with pytest.raises(pki.BadRequestException):
        agent_api.reject_request(info.request_id)
    assert Certificate.objects.count() == 1
    for refused in ("update_request", "validate_request", "assign_request"):
        review = agent_api.review_request(info.request_id)
        with pytest.raises(pki.BadRequestException):
            getattr(agent_api, refused)(info.request_id, review)


def test_reject_and_cancel(live_server, ca, agent_api, tmp_path):
    """reject and cancel end a request; its status says so."""
    public = cert_client(live_server.url)
    one = _enroll(public, tmp_path, cn="one.example.test")
    two = _enroll(public, tmp_path, cn="two.example.test")
    agent_api.reject_request(one.request_id)
    agent_api.cancel_request(two.request_id)
    assert public.get_request(one.request_id).request_status == "rejected"
    assert public.get_request(two.request_id).request_status == "canceled"
    assert (
        AuditEvent.objects.filter(action__in=["request_rejected", "request_canceled"]).count() == 2
    )


def test_approval_via_rest_delivers_like_the_agent_page(
    live_server, ca, agent, agent_api, tmp_path, smtp_server, client, settings
):
    """A user certificate waits for its mailbox confirmation exactly as on the web; approved
    through REST, it is mailed to the requester as an agent-page approval is."""
    public = cert_client(live_server.url)
    info = _enroll(public, tmp_path, profile="caUserCert", cn="Ada", email="ada@example.test")
    req = CertificateRequest.objects.get()
    assert req.status == Status.AWAITING_EMAIL and info.request_status == "pending"
    assert agent_api.list_requests(request_status="pending").cert_request_info_list == []
    with pytest.raises(pki.BadRequestException):
        agent_api.approve_request(info.request_id)
    confirmed(req)
    agent_api.approve_request(info.request_id)

    web = services.submit_request(
        profile="user",
        csr=openssl_csr(tmp_path, cn="Bea", email="bea@example.test", name="bea"),
        requester_email="bea@example.test",
        requester_name="Bea",
    )
    confirmed(web)
    login_verified(client, agent)
    response = client.post(reverse("agent:approve", args=[web.public_id]), {"validity_days": ""})
    assert response.status_code == 302

    rest_mail = [m for m in smtp_server.messages if "ada@example.test" in str(m["To"])]
    web_mail = [m for m in smtp_server.messages if "bea@example.test" in str(m["To"])]
    # The same messages in kind, one for one: the confirmation, then the issued certificate.
    assert len(rest_mail) == len(web_mail) >= 2
    req.refresh_from_db()
    web.refresh_from_db()

    def shape(message, r):
        """What a message is, its request's ID, name and serial taken out."""
        text = message["Subject"]
        for mine in (r.display_id, r.public_id, r.requester_name, r.certificate.serial):
            text = text.replace(mine, "*")
        parts = sorted(p.get_content_type() for p in message.walk() if not p.is_multipart())
        return text, parts

    assert [shape(m, req) for m in rest_mail] == [shape(m, web) for m in web_mail]
    assert "Your certificate is ready" in rest_mail[-1]["Subject"]
    assert req.display_id in rest_mail[-1]["Subject"]


def test_an_auto_approve_profile_completes_without_an_agent(live_server, ca, settings, tmp_path):
    """enroll_cert needs no agent when the profile issues at once: the submit reply says
    complete with the certificate ID, and the client skips the review."""
    settings.CA_PROFILES = {"server": {"auto_approve": True}}
    public = cert_client(live_server.url)
    inputs = {
        "cert_request_type": "pkcs10",
        "cert_request": openssl_csr(tmp_path, cn="auto.example.test"),
        "requestor_email": "ops@example.test",
    }
    [result] = public.enroll_cert("caServerCert", inputs)
    assert result.request.request_status == "complete"
    assert result.cert.serial_number == f"0x{Certificate.objects.get().serial}"
