"""End-entity pages: enrollment, request status, certificates and the CA, driven by the client."""

from __future__ import annotations

import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.test import Client
from django.urls import reverse

from requests_app import pki, services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from tests.helpers.csrs import make_csr, openssl_csr
from tests.helpers.mfa import login_verified

Status = CertificateRequest.Status


def _written():
    return CertificateRequest.objects.count(), AuditEvent.objects.count()


def _enroll(client, profile="server", **fields):
    data = {"requester_email": "owner@example.test", "requester_name": "Owner", "note": ""}
    data.update(fields)
    return client.post(reverse("enroll", args=[profile]), data)


@pytest.fixture
def issued(pending_request, agent):
    """The pending request approved: its certificate."""
    return services.approve_request(pending_request, agent=agent)


# --- home ---------------------------------------------------------------------------


def test_home_lists_profiles_and_lookups(client, db):
    """The home page offers every enabled profile, both lookups and the CA page."""
    response = client.get(reverse("home"))
    html = response.content.decode()
    assert response.status_code == 200
    for name, label in [("server", "TLS server certificate"), ("user", "Personal certificate")]:
        assert label in html
        assert reverse("enroll", args=[name]) in html
    assert "Check request status" in html
    assert f'action="{reverse("request_lookup")}"' in html
    assert f'action="{reverse("certificate_lookup")}"' in html
    assert reverse("ca_page") in html


def test_home_hides_disabled_profiles(client, db, settings):
    """A profile disabled in settings is not offered and its enrollment page is a 404."""
    settings.CA_PROFILES = {"agent": {"enabled": False}}
    assert reverse("enroll", args=["agent"]) not in client.get(reverse("home")).content.decode()
    assert client.get(reverse("enroll", args=["agent"])).status_code == 404


def test_pages_answer_head(client, db):
    """Read-only pages answer HEAD, as link checkers send it."""
    assert client.head(reverse("home")).status_code == 200


# --- enrollment ---------------------------------------------------------------------


def test_enroll_form_for_server_asks_for_extra_hostnames(client, db):
    """The server enrollment page has the CSR, upload and extra hostname fields."""
    html = client.get(reverse("enroll", args=["server"])).content.decode()
    assert 'name="csr"' in html
    assert 'name="csr_file"' in html
    assert 'name="extra_hostnames"' in html
    assert 'enctype="multipart/form-data"' in html


def test_enroll_form_for_user_has_no_hostnames(client, db):
    """The personal certificate page does not ask for hostnames."""
    html = client.get(reverse("enroll", args=["user"])).content.decode()
    assert 'name="csr"' in html
    assert 'name="extra_hostnames"' not in html


def test_enroll_pasted_csr_redirects_to_status_with_id(client, db):
    """A pasted CSR makes a pending request and the status page shows its ID to keep."""
    response = _enroll(
        client,
        csr=make_csr(cn="www.example.test"),
        extra_hostnames="api.example.test\nold.example.test, 192.0.2.7",
        note="for the shop",
    )
    req = CertificateRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("request_status", args=[req.public_id])
    assert req.status == Status.PENDING
    assert req.submitter_ip == "127.0.0.1"
    assert req.requester_note == "for the shop"
    assert req.requested_sans == [
        "DNS:api.example.test",
        "DNS:old.example.test",
        "IP:192.0.2.7",
        "DNS:www.example.test",
    ]
    html = client.get(response["Location"]).content.decode()
    assert req.display_id in html
    assert "Keep this ID" in html
    assert "Your request was submitted" in html


def test_enroll_uploaded_der_file(client, db):
    """A DER CSR uploaded as a file is accepted."""
    pem = make_csr(cn="files.example.test")
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    upload = SimpleUploadedFile("request.csr", der, "application/pkcs10")
    response = _enroll(client, csr_file=upload)
    assert response.status_code == 302
    assert CertificateRequest.objects.get().requested_sans == ["DNS:files.example.test"]


def test_enroll_user_profile_names_the_email(client, db):
    """A personal certificate request asks for the requester's email address."""
    response = _enroll(
        client, "user", csr=make_csr(cn="Ada Lovelace"), requester_email="ada@example.test"
    )
    assert response.status_code == 302
    assert CertificateRequest.objects.get().requested_sans == ["email:ada@example.test"]


def _tampered_csr() -> str:
    """A CSR whose subject was changed after it was signed."""
    der = x509.load_pem_x509_csr(make_csr(cn="host1.example.test").encode()).public_bytes(
        serialization.Encoding.DER
    )
    tampered = x509.load_der_x509_csr(der.replace(b"host1", b"evil1"))
    return tampered.public_bytes(serialization.Encoding.PEM).decode()


def _certificate_pem(ca) -> str:
    return ca.certificate_pem


def _private_key_pem(ca) -> str:
    key = pki.generate_private_key("p256")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


HOSTILE = {
    "garbage": (lambda ca: "hello, I would like a certificate", "not a certificate signing"),
    "truncated": (lambda ca: make_csr()[:200], "cut short"),
    "certificate": (_certificate_pem, "This is a certificate, not a certificate signing request"),
    "bad signature": (lambda ca: _tampered_csr(), "signature does not verify"),
    "rsa1024": (
        lambda ca: make_csr(key_type="rsa1024"),
        "RSA key is 1024 bits; at least 2048 are required",
    ),
    "private key": (_private_key_pem, "This is a private key: never send it to anyone."),
    "null bytes": (lambda ca: "-----BEGIN\x00", "Null characters are not allowed."),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_enroll_refuses_hostile_csr(client, ca, kind):
    """A bad CSR gets a clear message and a 400, and nothing is written."""
    make, message = HOSTILE[kind]
    before = _written()
    response = _enroll(client, csr=make(ca))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert _written() == before


def test_enroll_refuses_binary_garbage_upload(client, db):
    """An uploaded file that is not a CSR is refused on the upload field."""
    upload = SimpleUploadedFile("photo.jpg", bytes(range(256)) * 8, "image/jpeg")
    response = _enroll(client, csr_file=upload)
    assert response.status_code == 400
    assert "This is not a certificate signing request" in response.content.decode()
    assert response.context["form"].errors["csr_file"]
    assert _written() == (0, 0)


def test_enroll_refuses_huge_upload(client, db):
    """A 10 MB upload is refused by its size with a clear message; nothing is written."""
    before = _written()
    upload = SimpleUploadedFile("huge.csr", b"A" * (10 * 1024 * 1024))
    response = _enroll(client, csr_file=upload)
    html = response.content.decode()
    assert response.status_code == 400
    assert "10.0\xa0MB" in html
    assert "at most 64 KiB" in html
    assert _written() == before
    stand_in = response.wsgi_request.FILES["csr_file"]
    assert type(stand_in) is UploadedFile, "the oversized upload was stored"
    assert stand_in.size == 10 * 1024 * 1024


def test_enroll_upload_of_exactly_64_kib_is_read(client, db):
    """A file at the limit reaches the CSR check whole (and is refused as not a CSR)."""
    upload = SimpleUploadedFile("big.csr", b"\x01" * (64 * 1024))
    response = _enroll(client, csr_file=upload)
    assert response.status_code == 400
    assert "This is not a certificate signing request" in response.content.decode()
    assert type(response.wsgi_request.FILES["csr_file"]) is not UploadedFile


def test_enroll_checks_csrf(db):
    """The enrollment form is CSRF-protected although its upload cap runs first."""
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(
        reverse("enroll", args=["server"]),
        {"csr": make_csr(), "requester_email": "owner@example.test"},
    )
    assert response.status_code == 403
    assert _written() == (0, 0)
    page = strict.get(reverse("enroll", args=["server"]))
    token = page.cookies["csrftoken"].value
    response = strict.post(
        reverse("enroll", args=["server"]),
        {"csr": make_csr(), "requester_email": "owner@example.test", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


def test_enroll_refuses_email_with_newline(client, db):
    """An email address with a header injected after a newline is refused."""
    before = _written()
    response = _enroll(
        client, csr=make_csr(), requester_email="owner@example.test\nBcc: all@example.test"
    )
    assert response.status_code == 400
    assert "Enter a valid email address" in response.content.decode()
    assert _written() == before


def test_enroll_refuses_name_with_newline(client, db):
    """The service's refusal of a two-line name is shown on the name field."""
    before = _written()
    response = _enroll(client, csr=make_csr(), requester_name="Eve\nBcc: x@example.test")
    assert response.status_code == 400
    assert "the name must be on one line" in response.content.decode()
    assert _written() == before


def test_enroll_refuses_bad_extra_hostname(client, db):
    """An invalid extra hostname is reported on that field."""
    response = _enroll(client, csr=make_csr(), extra_hostnames="ok.example.test\nbad..name")
    assert response.status_code == 400
    assert "empty label" in response.content.decode()
    assert response.context["form"].errors["extra_hostnames"]


def test_enroll_server_needs_a_hostname(client, db):
    """A server CSR without any hostname is refused with the profile's explanation."""
    response = _enroll(client, csr=make_csr(cn=None))
    assert response.status_code == 400
    assert "needs at least one hostname" in response.content.decode()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Paste your CSR here or upload the CSR file."),
        ({"csr": "x", "csr_file": "both"}, "not both"),
        ({"requester_email": ""}, "This field is required."),
    ],
)
def test_enroll_refuses_incomplete_form(client, db, fields, message):
    """Missing or conflicting input re-renders the form with a message and status 400."""
    if fields.get("csr_file"):
        fields["csr_file"] = SimpleUploadedFile("r.csr", make_csr().encode())
    response = _enroll(client, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert CertificateRequest.objects.count() == 0


def test_enroll_unknown_profile_is_404(client, db):
    """An unknown profile gives a clear 404 page for GET and POST and writes nothing."""
    get = client.get(reverse("enroll", args=["codesigning"]))
    post = _enroll(client, "codesigning", csr=make_csr())
    assert get.status_code == post.status_code == 404
    assert "No such enrollment profile" in get.content.decode()
    assert _written() == (0, 0)


# --- request status -----------------------------------------------------------------


def test_request_lookup_redirects_to_status(client, pending_request):
    """The lookup form accepts an ID in lower case with spaces and goes to its status page."""
    typed = pending_request.display_id.lower().replace("-", " ")
    response = client.get(reverse("request_lookup"), {"request_id": typed})
    assert response.status_code == 302
    assert response["Location"] == reverse("request_status", args=[pending_request.public_id])


def test_request_lookup_without_id_shows_form(client, db):
    """The lookup page without a query shows its form."""
    response = client.get(reverse("request_lookup"))
    assert response.status_code == 200
    assert 'name="request_id"' in response.content.decode()


def test_request_lookup_refuses_malformed_id(client, db):
    """A string that cannot be a request ID is refused on the form with a 400."""
    response = client.get(reverse("request_lookup"), {"request_id": "12/34"})
    assert response.status_code == 400
    assert "A request ID has 20 letters and digits" in response.content.decode()


@pytest.mark.parametrize("style", ["exact", "lower", "no-hyphens"])
def test_request_status_pending(client, pending_request, style):
    """The status page finds a request by its ID in any case, with or without hyphens."""
    typed = {
        "exact": pending_request.display_id,
        "lower": pending_request.display_id.lower(),
        "no-hyphens": pending_request.public_id.lower(),
    }[style]
    response = client.get(reverse("request_status", args=[typed]))
    html = response.content.decode()
    assert response.status_code == 200
    assert pending_request.display_id in html
    assert "Pending" in html
    assert "admin@example.test" not in html


def test_request_status_unknown_id_is_404(client, pending_request):
    """An unknown ID gives a 404 that says so and nothing more."""
    response = client.get(reverse("request_status", args=["0" * 20]))
    html = response.content.decode()
    assert response.status_code == 404
    assert "No request has that ID" in html
    assert pending_request.display_id not in html
    assert "admin@example.test" not in html


def test_request_status_rejected_shows_reason(client, pending_request, agent):
    """A rejected request shows the agent's reason."""
    services.reject_request(pending_request, agent=agent, reason="Hostname is not ours.")
    html = client.get(pending_request.get_absolute_url()).content.decode()
    assert "Rejected" in html
    assert "Hostname is not ours." in html
    assert agent.username not in html


def test_request_status_canceled(client, pending_request, agent):
    """A canceled request says so."""
    services.cancel_request(pending_request, agent=agent)
    assert "Canceled" in client.get(pending_request.get_absolute_url()).content.decode()


def test_request_status_complete_links_certificate(client, issued):
    """A complete request shows the serial (05:35:F2:...) and links to the certificate."""
    req = issued.request
    html = client.get(req.get_absolute_url()).content.decode()
    assert "Issued" in html
    assert issued.serial_colons in html
    assert reverse("certificate_detail", args=[issued.serial]) in html


def test_request_status_never_shows_email(client, ca):
    """A personal request's status page never shows the requester's email address."""
    req = services.submit_request(
        profile="user", csr=make_csr(cn="Ada"), requester_email="ada@example.test"
    )
    assert "ada@example.test" not in client.get(req.get_absolute_url()).content.decode()


# --- certificates -------------------------------------------------------------------


def test_certificate_lookup_redirects(client, issued):
    """A serial typed in upper case with colons leads to the certificate page."""
    typed = issued.serial_colons
    response = client.get(reverse("certificate_lookup"), {"serial": typed})
    assert response.status_code == 302
    assert response["Location"] == reverse("certificate_detail", args=[issued.serial])


def test_certificate_lookup_refuses_non_hex(client, db):
    """A serial that is not hexadecimal is refused on the form."""
    response = client.get(reverse("certificate_lookup"), {"serial": "not-a-serial"})
    assert response.status_code == 400
    assert "hexadecimal" in response.content.decode()


def test_certificate_lookup_without_serial_shows_form(client, db):
    """The lookup page without a query shows its form."""
    assert 'name="serial"' in client.get(reverse("certificate_lookup")).content.decode()


def test_certificate_detail(client, issued, ca):
    """The certificate page shows its fields, fingerprint, PEM with Copy, and downloads."""
    response = client.get(reverse("certificate_detail", args=[issued.serial_colons.lower()]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "CN=www.example.test" in html
    assert "CN=Test Root CA" in html
    assert issued.serial_colons in html
    assert "DNS:www.example.test" in html
    assert pki.fingerprint(issued.x509) in html
    assert issued.pem.strip().splitlines()[1] in html
    assert 'data-copy="certificate-pem"' in html
    assert "Valid" in html
    for fmt in ("pem", "der", "p7b", "chain"):
        assert reverse("certificate_download", args=[issued.serial, fmt]) in html


@pytest.mark.parametrize("serial", ["abcdef", "zz", "x" * 500])
def test_certificate_detail_unknown_serial_is_404(client, issued, serial):
    """An unknown or malformed serial gives a 404 page saying no certificate has it."""
    response = client.get(reverse("certificate_detail", args=[serial]))
    assert response.status_code == 404
    assert "No certificate has that serial number" in response.content.decode()


def test_certificate_detail_prefers_newest_of_two_cas(client, issued, ca, agent):
    """When two CAs issued the same serial, the newest certificate is shown."""
    second = services.create_ca("CN=Second CA", force=True)
    req = services.submit_request(
        profile="server", csr=make_csr(cn="two.example.test"), requester_email="a@example.test"
    )
    newer = services.approve_request(req, agent=agent)
    Certificate.objects.filter(pk=newer.pk).update(serial=issued.serial)
    html = client.get(reverse("certificate_detail", args=[issued.serial])).content.decode()
    assert second.subject in html
    assert "CN=two.example.test" in html


@pytest.mark.parametrize(
    ("fmt", "content_type", "suffix"),
    [
        ("pem", "application/x-pem-file", ".pem"),
        ("der", "application/pkix-cert", ".cer"),
        ("p7b", "application/pkcs7-mime", ".p7b"),
        ("chain", "application/x-pem-file", "-fullchain.pem"),
    ],
)
def test_certificate_download(client, issued, ca, fmt, content_type, suffix):
    """Each format is an attachment with its content type and holds the certificate."""
    response = client.get(reverse("certificate_download", args=[issued.serial, fmt]))
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == (
        f'attachment; filename="{issued.serial_filename}{suffix}"'
    )
    body = response.content
    certs = {
        "pem": lambda: [x509.load_pem_x509_certificate(body)],
        "der": lambda: [x509.load_der_x509_certificate(body)],
        "p7b": lambda: pkcs7.load_der_pkcs7_certificates(body),
        "chain": lambda: x509.load_pem_x509_certificates(body),
    }[fmt]()
    # PKCS#7 holds a SET, so only the PEM formats keep the leaf-first order.
    assert certs[0] == issued.x509 or fmt == "p7b"
    assert set(certs) == ({issued.x509} if fmt in ("pem", "der") else {issued.x509, ca.certificate})


def test_certificate_download_unknown_format_is_404(client, issued):
    """An unknown download format is a 404."""
    response = client.get(reverse("certificate_download", args=[issued.serial, "pfx"]))
    assert response.status_code == 404


def test_certificate_download_unknown_serial_is_404(client, db):
    """A download of an unknown serial is a 404."""
    assert client.get(reverse("certificate_download", args=["abc", "pem"])).status_code == 404


# --- the CA -------------------------------------------------------------------------


def test_ca_page(client, ca):
    """The CA page shows the subject, validity, fingerprint and download links."""
    html = client.get(reverse("ca_page")).content.decode()
    assert "CN=Test Root CA" in html
    assert ca.fingerprint_sha256 in html
    assert f"{ca.not_after:%Y-%m-%d}" in html
    for fmt in ("pem", "der", "p7b"):
        assert reverse("ca_certificate", args=[ca.pk, fmt]) in html


def test_ca_page_without_ca(client, db):
    """Without a CA the page says so instead of failing."""
    response = client.get(reverse("ca_page"))
    assert response.status_code == 200
    assert "No certificate authority has been set up yet" in response.content.decode()


def test_ca_page_lists_earlier_cas(client, ca):
    """After a new default CA, the old one is still offered for download."""
    services.create_ca("CN=Next Root CA", force=True)
    html = client.get(reverse("ca_page")).content.decode()
    assert "CN=Next Root CA" in html
    assert "Earlier CAs" in html
    assert reverse("ca_certificate", args=[ca.pk, "pem"]) in html


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("pem", "application/x-pem-file"),
        ("der", "application/pkix-cert"),
        ("p7b", "application/pkcs7-mime"),
    ],
)
def test_ca_certificate_download(client, ca, fmt, content_type):
    """The CA certificate downloads in each format as an attachment."""
    response = client.get(reverse("ca_certificate", args=[ca.pk, fmt]))
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"].startswith("attachment; filename=")


def test_ca_download_refusals(client, ca):
    """An unknown format or CA is a 404."""
    assert client.get(reverse("ca_certificate", args=[ca.pk, "pfx"])).status_code == 404
    assert client.get(reverse("ca_certificate", args=[ca.pk + 1, "pem"])).status_code == 404


def test_ca_issuers_url_serves_der(client, issued, ca):
    """The caIssuers URL in an issued certificate serves the CA certificate in DER."""
    aia = issued.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    issuers = x509.AuthorityInformationAccessOID.CA_ISSUERS
    url = next(d.access_location.value for d in aia if d.access_method == issuers)
    assert url.endswith(reverse("ca_issuers", args=[ca.pk]))
    response = client.get(url.removeprefix("http://testserver"))
    assert response["Content-Type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(response.content) == ca.certificate


# --- end to end ---------------------------------------------------------------------


def test_end_to_end_openssl(client, ca, agent, tmp_path):
    """An openssl CSR submitted on the page, approved by an agent, verifies with openssl."""
    csr_path = openssl_csr(tmp_path, subject="/CN=e2e.example.test/O=Example")
    with csr_path.open("rb") as handle:
        response = _enroll(client, csr_file=handle, extra_hostnames="alt.example.test")
    assert response.status_code == 302
    req = CertificateRequest.objects.get()

    login_verified(client, agent)
    response = client.post(reverse("agent:approve", args=[req.public_id]), {})
    assert response.status_code == 302
    assert response["Location"] == reverse("agent:certificate_issued", args=[req.public_id])
    req.refresh_from_db()

    client.logout()
    cert_file, ca_file = tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert_file.write_bytes(
        client.get(reverse("certificate_download", args=[req.certificate.serial, "chain"])).content
    )
    ca_file.write_bytes(client.get(reverse("ca_certificate", args=[ca.pk, "pem"])).content)
    verify = ["openssl", "verify", "-CAfile", str(ca_file), "-purpose", "sslserver"]
    result = subprocess.run(
        [*verify, "-verify_hostname", "alt.example.test", str(cert_file)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{cert_file}: OK" in result.stdout


def test_cached_certificate_page_follows_revocation(client, pending_request, agent):
    """The shared rendering of a certificate page changes as soon as the certificate is revoked."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    url = f"/certificates/{cert.serial}/"
    assert "revoked" not in client.get(url).content.decode().lower()
    assert "revoked" not in client.get(url).content.decode().lower()  # served from the cache
    services.revoke_certificate(cert.serial, reason="keyCompromise", actor=agent)
    assert "revoked" in client.get(url).content.decode().lower()
