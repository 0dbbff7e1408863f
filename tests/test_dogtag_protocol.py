"""Dogtag's end-entity XML servlets (what certmonger's dogtag-submit speaks), reply by reply."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.urls import reverse

from requests_app import pki, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

Status = CertificateRequest.Status
HEADER = b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>'
EE = "/ca/ee/ca"
SUBMIT, CHECK, DISPLAY, LIST = (
    f"{EE}/profileSubmit",
    f"{EE}/checkRequest",
    f"{EE}/displayCertFromRequest",
    f"{EE}/profileList",
)


def xml_of(response, status: int = 200) -> ET.Element:
    """Check what every reply shares (XML, header, no whitespace around values) and parse it."""
    assert response.status_code == status
    assert response["Content-Type"] == "application/xml"
    body = response.content
    assert body.startswith(HEADER)
    assert b"<html" not in body.lower()
    root = ET.fromstring(body)  # noqa: S314 - our own reply, under test
    for element in root.iter():
        if element.text is not None:
            assert element.text == element.text.strip(), element.tag
    return root


def submit(client, **fields):
    data = {"profileId": "caServerCert", "cert_request_type": "pkcs10", "xml": "true", **fields}
    return client.post(SUBMIT, data)


def approved(req, agent) -> Certificate:
    return services.approve_request(req, agent=agent)


# --- profileSubmit ------------------------------------------------------------------


def test_submit_leaves_a_pending_request_in_dogtags_exact_form(client, ca, settings):
    """A CSR for caServerCert becomes a pending server request: Status 2 with its RequestId."""
    response = submit(client, cert_request=make_csr(cn="host1.example.test"))
    xml_of(response)
    req = CertificateRequest.objects.get()
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?><XMLResponse><Status>2</Status>'
        "<Error>Request Deferred - defer request</Error>"
        f"<RequestId>{req.public_id}</RequestId></XMLResponse>"
    )
    assert (req.status, req.profile, req.channel) == (Status.PENDING, "server", "dogtag")
    assert req.requested_sans == ["DNS:host1.example.test"]
    assert req.requester_email == settings.DOGTAG_REQUESTER_EMAIL
    assert req.submitter_ip == "127.0.0.1"


def test_submitted_request_is_in_the_agent_queue(client, ca, agent):
    """The agent queue lists a request that came through the protocol."""
    submit(client, cert_request=make_csr())
    req = CertificateRequest.objects.get()
    login_verified(client, agent)
    page = client.get(reverse("agent:request_list")).content.decode()
    assert req.display_id in page


def test_requestor_fields_are_kept_and_the_mail_says_getcert_refresh(
    client, ca, mailoutbox, django_capture_on_commit_callbacks
):
    """requestor_name/email/phone land on the request; the mail tells how to refresh certmonger."""
    with django_capture_on_commit_callbacks(execute=True):
        submit(
            client,
            cert_request=make_csr(),
            requestor_name="Ops Team",
            requestor_email="ops@example.test",
            requestor_phone="+1 555 0100",
            some_unknown_field="ignored",
        )
    req = CertificateRequest.objects.get()
    assert (req.requester_name, req.requester_email) == ("Ops Team", "ops@example.test")
    assert req.requester_note == "Phone: +1 555 0100"
    mail = next(m for m in mailoutbox if m.to == ["ops@example.test"])
    assert "getcert refresh -i" in mail.body
    assert "getcert refresh -i" in mail.alternatives[0].content


def test_web_requests_get_no_getcert_line(ca, mailoutbox, django_capture_on_commit_callbacks):
    """A request from the web pages is not told about certmonger."""
    with django_capture_on_commit_callbacks(execute=True):
        services.submit_request(
            profile="server", csr=make_csr(), requester_email="web@example.test"
        )
    assert mailoutbox
    assert all("getcert" not in m.body for m in mailoutbox)


@pytest.mark.parametrize(
    ("dogtag_id", "profile"),
    [("caServerCert", "server"), ("caECServerCert", "server"), ("caUserCert", "user")],
)
def test_dogtag_profile_ids_map_to_our_profiles(client, ca, dogtag_id, profile):
    """Dogtag's profile IDs choose our profiles."""
    response = submit(
        client,
        profileId=dogtag_id,
        cert_request=make_csr(cn="host.example.test" if profile == "server" else "Ann"),
        requestor_email="ann@example.test",
    )
    assert xml_of(response).findtext("Status") == "2"
    assert CertificateRequest.objects.get().profile == profile


def test_user_profile_takes_the_email_from_the_csr(client, ca):
    """caECUserCert without requestor_email uses the CSR's email address (getcert request -E)."""
    csr = make_csr(cn="Ann", sans=[x509.RFC822Name("ann@example.test")])
    response = submit(client, profileId="caECUserCert", cert_request=csr)
    assert xml_of(response).findtext("Status") == "2"
    req = CertificateRequest.objects.get()
    assert (req.profile, req.requester_email) == ("user", "ann@example.test")
    assert req.requested_sans == ["email:ann@example.test"]


def test_user_profile_without_any_email_is_refused_clearly(client, ca):
    """A user certificate names an email; without one the reply says how to send it."""
    root = xml_of(submit(client, profileId="caUserCert", cert_request=make_csr(cn="Ann")))
    assert root.findtext("Status") == "1"
    assert "requestor_email" in root.findtext("Error")
    assert not CertificateRequest.objects.exists()


def test_server_request_without_email_is_refused_when_no_fallback_is_set(client, ca, settings):
    """With DOGTAG_REQUESTER_EMAIL empty, a request must name its requester."""
    settings.DOGTAG_REQUESTER_EMAIL = ""
    root = xml_of(submit(client, cert_request=make_csr()))
    assert root.findtext("Status") == "1"
    assert "requestor_email" in root.findtext("Error")


def test_wrong_profile_id_gets_dogtags_error(client, ca):
    """An unknown profile ID is Status 1 naming it, and nothing is queued."""
    root = xml_of(submit(client, profileId="caFooCert", cert_request=make_csr()))
    assert root.findtext("Status") == "1"
    assert root.findtext("Error").startswith("Profile caFooCert is not found")
    assert not CertificateRequest.objects.exists()


def test_setting_adds_and_drops_profile_ids(client, ca, settings):
    """DOGTAG_PROFILE_IDS maps more IDs to a profile, and None drops one."""
    settings.DOGTAG_PROFILE_IDS = {"caInternalServer": "server", "caECServerCert": None}
    root = xml_of(submit(client, profileId="caInternalServer", cert_request=make_csr()))
    assert root.findtext("Status") == "2"
    assert CertificateRequest.objects.get().profile == "server"
    root = xml_of(submit(client, profileId="caECServerCert", cert_request=make_csr()))
    assert root.findtext("Status") == "1"


def test_auto_approve_profile_issues_at_once_with_bare_base64(client, ca, settings):
    """With auto_approve the reply is Status 0 and b64 is the bare DER of the new certificate."""
    settings.CA_PROFILES = {"server": {"auto_approve": True}}
    root = xml_of(submit(client, cert_request=make_csr(cn="auto.example.test")))
    assert root.findtext("Status") == "0"
    cert = Certificate.objects.get()
    b64 = root.findtext("Requests/Request/b64")
    assert "-----" not in b64
    assert base64.b64decode(b64) == pki.to_der(cert.x509)
    assert root.findtext("Requests/Request/serialno") == cert.serial
    req = CertificateRequest.objects.get()
    assert (req.status, req.acted_by, req.channel) == (Status.COMPLETE, None, "dogtag")
    event = AuditEvent.objects.get(action="request_approved")
    assert event.actor_label == "system"


def test_policy_refusal_is_status_3_with_our_message(client, ca):
    """A CSR our policy refuses (RSA 1024) is Dogtag's rejected status with the reason."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    root = xml_of(submit(client, cert_request=make_csr(key=weak)))
    assert root.findtext("Status") == "3"
    assert root.findtext("Error").startswith("Request Rejected - RSA key is 1024 bits")
    assert not CertificateRequest.objects.exists()


def test_bare_base64_der_csr_is_accepted(client, ca):
    """Other Dogtag clients send the PKCS#10 as bare base64; that works too."""
    der = x509.load_pem_x509_csr(make_csr().encode()).public_bytes(serialization.Encoding.DER)
    root = xml_of(submit(client, cert_request=base64.encodebytes(der).decode()))
    assert root.findtext("Status") == "2"


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"cert_request": "garbage \x01\x02 <not a csr>"}, "3", "not a certificate signing"),
        ({"cert_request": ""}, "1", "cert_request"),
        ({"cert_request": "x", "cert_request_type": "crmf"}, "1", "crmf"),
        ({"cert_request": make_csr(), "requestor_name": "a\x00b"}, "1", "NUL"),
        ({"cert_request": make_csr(), "requestor_name": "x" * 201}, "1", "requestor_name"),
        ({"cert_request": make_csr(), "requestor_email": "not-an-email"}, "3", "email"),
        ({"cert_request": make_csr(), "requestor_name": "two\nlines"}, "3", "one line"),
        ({"cert_request": "A" * 100_000}, "3", "64 KiB"),
        ({"cert_request": "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 70_000}, "3", "KiB"),
    ],
)
def test_malformed_and_hostile_submissions_get_the_xml_error(client, ca, fields, status, error):
    """Garbage, oversized and hostile fields are an XML error with a clear message."""
    root = xml_of(submit(client, **fields))
    assert root.findtext("Status") == status
    assert error in root.findtext("Error")
    assert not CertificateRequest.objects.exists()


def test_a_body_over_the_upload_limit_gets_the_xml_error(client, ca):
    """A huge CSR beyond DATA_UPLOAD_MAX_MEMORY_SIZE is Status 1, not Django's 400 page."""
    root = xml_of(submit(client, cert_request="A" * 400_000))
    assert root.findtext("Status") == "1"
    assert "cannot be read" in root.findtext("Error")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"--xx\r\nContent-Disposition: form-data\r\n\r\nbroken", "multipart/form-data"),
        (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "text/xml"),
        (b"profileId=caServerCert&" + b"a=1&" * 2000, "application/x-www-form-urlencoded"),
    ],
)
def test_garbage_bodies_get_the_xml_error(client, ca, body, content_type):
    """Bodies that are no form at all (binary, broken multipart, XML, field floods) get XML."""
    response = client.generic("POST", SUBMIT, body, content_type=content_type)
    root = xml_of(response)
    assert root.findtext("Status") == "1"
    assert not CertificateRequest.objects.exists()


def test_an_unexpected_failure_is_still_xml(client, ca, monkeypatch):
    """A bug behind a servlet gives an XML Status 1 (HTTP 500), never Django's error page."""

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "submit_enrollment", broken)
    root = xml_of(submit(client, cert_request=make_csr()), status=500)
    assert root.findtext("Status") == "1"
    assert "boom" not in root.findtext("Error")


def test_other_methods_get_xml(client, ca):
    """PUT is refused with 405 and an XML body."""
    response = client.put(SUBMIT, "x")
    assert response["Allow"] == "GET, POST"
    assert xml_of(response, status=405).findtext("Status") == "1"


@pytest.mark.parametrize(
    "path",
    [
        "/ca/ee/ca//profileSubmit",
        "/ca/ee/ca/profileSubmit/",
        "//ca/ee/ca/profileSubmit",
        "/ca//ee/ca///profileSubmit//",
    ],
)
def test_extra_slashes_are_tolerated(client, ca, path):
    """`-E URL/` gives a double slash; every such path reaches the servlet."""
    data = {"profileId": "caServerCert", "cert_request": make_csr()}
    response = client.post(path, data, PATH_INFO=path)  # the client would read "//ca" as a host
    assert xml_of(response).findtext("Status") == "2"


def test_markup_in_a_message_is_escaped(client, ca):
    """A hostile profile ID comes back escaped and shortened; the reply stays well-formed XML."""
    root = xml_of(submit(client, profileId="<x>&amp;</x>" + "y" * 100, cert_request="z"))
    error = root.findtext("Error")
    assert error.startswith("Profile <x>&amp;</x>yyy")
    assert "y" * 60 not in error


# --- renewal by serial --------------------------------------------------------------


@pytest.fixture
def issued(pending_request, agent) -> Certificate:
    return approved(pending_request, agent)


def renew(client, serial, **fields):
    data = {"profileId": "caServerCert", "renewal": "true", "serial_num": serial, "xml": "true"}
    return client.post(SUBMIT, {**data, **fields})


def test_renewal_by_serial_queues_a_request_with_the_same_key(client, issued, agent):
    """renewal=true with a decimal serial queues same profile, subject, SANs and key; no CSR."""
    root = xml_of(renew(client, str(int(issued.serial, 16))))
    assert root.findtext("Status") == "2"
    req = CertificateRequest.objects.get(public_id=root.findtext("RequestId"))
    original = issued.request
    assert req.renewal_of == issued
    assert (req.status, req.channel, req.csr_pem) == (Status.PENDING, "dogtag", "")
    assert (req.profile, req.subject) == (original.profile, original.subject)
    assert req.requested_sans == issued.sans
    assert req.public_key_sha256 == original.public_key_sha256
    assert req.requester_email == original.requester_email
    event = AuditEvent.objects.get(request=req, action="renewal_submitted")
    assert event.details["renewal_of"] == issued.serial

    cert = approved(req, agent)
    assert cert.serial != issued.serial
    assert cert.x509.subject == issued.x509.subject
    assert pki.same_public_key(cert.x509.public_key(), issued.x509.public_key())
    assert cert.sans == issued.sans


def test_renewals_are_marked_on_the_agent_pages(client, issued, agent):
    """The queue marks a renewal next to its ID; the details name the renewed serial."""
    renew(client, str(int(issued.serial, 16)))
    req = CertificateRequest.objects.get(renewal_of=issued)
    login_verified(client, agent)
    listing = client.get(reverse("agent:request_list")).content.decode()
    assert re.search(re.escape(req.display_id) + r"</a> <small[^>]*>renewal</small>", listing)
    assert listing.count(">renewal</small>") == 1
    detail = client.get(req.get_agent_url()).content.decode()
    assert "Renewal of" in detail and issued.serial_colons in detail.replace("<wbr>", "")


def test_renewal_is_never_issued_without_an_agent(client, issued, settings):
    """Even an auto_approve profile leaves a renewal by serial pending (CVE-2021-20179)."""
    settings.CA_PROFILES = {"server": {"auto_approve": True}}
    root = xml_of(renew(client, str(int(issued.serial, 16))))
    assert root.findtext("Status") == "2"
    assert CertificateRequest.objects.get(renewal_of=issued).status == Status.PENDING
    assert Certificate.objects.count() == 1


def test_a_second_renewal_returns_the_waiting_one(client, issued):
    """Resubmitting gives the same waiting renewal instead of a second request."""
    first = xml_of(renew(client, str(int(issued.serial, 16)))).findtext("RequestId")
    second = xml_of(renew(client, "0x" + issued.serial)).findtext("RequestId")
    assert first == second
    assert CertificateRequest.objects.filter(renewal_of=issued).count() == 1


@pytest.mark.parametrize(
    ("serial", "error"),
    [
        ("12345", "no certificate with serial number 12345"),
        ("1' OR '1'='1", "is not a certificate serial number"),
        ("9" * 5000, "is not a certificate serial number"),
        ("-5", "is not a certificate serial number"),
        ("", "needs serial_num"),
    ],
)
def test_unknown_or_unreadable_serials_are_refused(client, issued, serial, error):
    """A renewal of a serial we never issued, or of no number at all, is refused clearly."""
    root = xml_of(renew(client, serial))
    assert root.findtext("Status") in ("1", "3")
    assert error in root.findtext("Error")
    assert not CertificateRequest.objects.filter(renewal_of__isnull=False).exists()


def test_revoked_serials_are_refused(client, issued):
    """A revoked certificate cannot be renewed."""
    Certificate.objects.filter(pk=issued.pk).update(status=Certificate.Status.REVOKED)
    root = xml_of(renew(client, str(int(issued.serial, 16))))
    assert root.findtext("Status") == "3"
    assert "is revoked" in root.findtext("Error")


def test_a_renewal_of_a_since_revoked_certificate_cannot_be_approved(client, issued, agent):
    """Revocation between the renewal and its approval stops the approval."""
    renew(client, str(int(issued.serial, 16)))
    req = CertificateRequest.objects.get(renewal_of=issued)
    Certificate.objects.filter(pk=issued.pk).update(status=Certificate.Status.REVOKED)
    with pytest.raises(services.InvalidTransition, match="revoked"):
        approved(req, agent)
    req.refresh_from_db()
    assert req.status == Status.PENDING


def test_submit_renewal_service_sends_the_submitted_signal(issued):
    """The renewal service counts the request and notifies like a submission."""
    from requests_app import signals

    received = []
    signals.request_submitted.connect(
        lambda **kw: received.append(kw["request"]), weak=False, dispatch_uid="test-renewal"
    )
    try:
        req = services.submit_renewal(int(issued.serial, 16), channel="command")
    finally:
        signals.request_submitted.disconnect(dispatch_uid="test-renewal")
    assert received == [req]
    assert req.channel == "command"
    assert services.status_counts()["pending"] == 1


# --- checkRequest -------------------------------------------------------------------


def check(client, request_id):
    return client.get(CHECK, {"requestId": request_id, "xml": "true"})


def test_check_pending_exact_form(client, pending_request):
    """A waiting request is <status>pending</status> with its ID, nothing around the values."""
    response = check(client, pending_request.public_id)
    xml_of(response)
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?><xml><header>'
        f"<status>pending</status><requestId>{pending_request.public_id}</requestId>"
        "<authority>ca</authority></header><fixed/><records/></xml>"
    )


def test_check_complete_names_the_serial(client, issued):
    """An approved request is complete, with the serial (hex) in records."""
    root = xml_of(check(client, issued.request.public_id))
    assert root.findtext("header/status") == "complete"
    assert root.findtext("header/requestId") == issued.request.public_id
    assert root.findtext("records/record/serialNumber") == issued.serial


def test_check_rejected_carries_the_reason(client, pending_request, agent):
    """A rejected request says so, with the agent's reason in unexpectedError."""
    services.reject_request(pending_request, agent=agent, reason="Hostname not ours")
    root = xml_of(check(client, pending_request.public_id))
    assert root.findtext("header/status") == "rejected"
    assert "Hostname not ours" in root.findtext("fixed/unexpectedError")


def test_check_canceled(client, pending_request, agent):
    """A canceled request is canceled, with a message."""
    services.cancel_request(pending_request, agent=agent, note="duplicate")
    root = xml_of(check(client, pending_request.public_id))
    assert root.findtext("header/status") == "canceled"
    assert "canceled: duplicate" in root.findtext("fixed/unexpectedError")


@pytest.mark.parametrize(
    "request_id",
    ["7", "1' OR '1'='1", "1; DROP TABLE requests_app_certificaterequest;--", "", "<x/>" * 50],
)
def test_check_unknown_or_hostile_ids_get_not_found(client, pending_request, request_id):
    """Unknown and SQL-looking request IDs get Dogtag's not-found error, escaped."""
    root = xml_of(check(client, request_id))
    error = root.findtext("fixed/unexpectedError")
    assert "not found" in error or "missing" in error
    assert root.find("header/status") is None
    assert CertificateRequest.objects.filter(pk=pending_request.pk).exists()


def test_check_accepts_the_id_leniently(client, pending_request):
    """Leading spaces (Dogtag's quirk), lower case and hyphens still find the request."""
    root = xml_of(check(client, "  " + pending_request.display_id.lower()))
    assert root.findtext("header/requestId") == pending_request.public_id


# --- displayCertFromRequest ---------------------------------------------------------


def test_display_gives_the_certificate_as_pem(client, issued):
    """A complete request's certificate comes back in base64Cert."""
    response = client.get(
        DISPLAY, {"requestId": issued.request.public_id, "importCert": "true", "xml": "true"}
    )
    root = xml_of(response)
    pem = root.findtext("records/record/base64Cert")
    assert pki.load_pem(pem) == issued.x509
    assert root.findtext("header/requestId") == issued.request.public_id


def test_display_before_approval_says_not_completed(client, pending_request):
    """No certificate yet: unexpectedError says the request is not completed."""
    root = xml_of(client.get(DISPLAY, {"requestId": pending_request.public_id}))
    assert root.find("records/record/base64Cert") is None
    assert "was not completed" in root.findtext("fixed/unexpectedError")


def test_display_unknown_id(client, ca):
    """An unknown request ID is not found."""
    root = xml_of(client.get(DISPLAY, {"requestId": "0x2a"}))
    assert "not found" in root.findtext("fixed/unexpectedError")


# --- profileList --------------------------------------------------------------------


def listed(root) -> dict[str, tuple[str, str]]:
    return {
        s.findtext("profileId"): (s.findtext("profileIsEnable"), s.findtext("profileIsVisible"))
        for s in root.findall("output/set/record/list/*/set")
    }


def test_profile_list_names_our_profiles_under_dogtag_ids(client, db):
    """profileList offers the Dogtag IDs of the enabled profiles, enabled and visible."""
    assert listed(xml_of(client.get(LIST, {"xml": "true"}))) == {
        "caServerCert": ("true", "true"),
        "caECServerCert": ("true", "true"),
        "caUserCert": ("true", "true"),
        "caECUserCert": ("true", "true"),
    }


def test_profile_list_leaves_out_disabled_profiles(client, db, settings):
    """A disabled profile's IDs are not offered."""
    settings.CA_PROFILES = {"user": {"enabled": False}}
    assert set(listed(xml_of(client.get(LIST)))) == {"caServerCert", "caECServerCert"}


# --- the agent servlets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/ca/agent/ca/profileReview"),
        ("post", "/ca/agent/ca/profileProcess"),
        ("post", "/ca/ee/ca/profileProcess"),
    ],
)
def test_agent_servlets_refuse(client, pending_request, method, path):
    """profileReview/profileProcess refuse in XML; the request stays pending."""
    data = {"requestId": pending_request.public_id, "op": "approve", "xml": "true"}
    root = xml_of(getattr(client, method)(path, data), status=403)
    assert root.findtext("output/set/errorCode") == "1"
    assert "agent approves" in root.findtext("output/set/errorReason")
    pending_request.refresh_from_db()
    assert pending_request.status == Status.PENDING


def test_agent_submission_is_refused(client, ca):
    """profileSubmitSSLClient (getcert -a) is refused in profileSubmit's XML form."""
    response = client.post(
        f"{EE}/profileSubmitSSLClient", {"profileId": "caServerCert", "cert_request": make_csr()}
    )
    root = xml_of(response, status=403)
    assert root.findtext("Status") == "1"
    assert "agent approves" in root.findtext("Error")
    assert not CertificateRequest.objects.exists()
