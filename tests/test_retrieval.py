"""Retrieval and import pages: the certificate page, server-made keys, the CA page, the CSP."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from requests_app import links, pki, services, throttle
from requests_app.models import Certificate, CertificateRequest
from requests_app.views import ee
from tests.conftest import SERVER_KEY_PASSPHRASE
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.mfa import login_verified

PASSPHRASE = SERVER_KEY_PASSPHRASE
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture
def server_cert(pending_request, agent):
    """A server certificate whose key the requester made."""
    return services.approve_request(pending_request, agent=agent)


def _p12(client, cert, passphrase=PASSPHRASE, fmt="modern", request_id=None, **extra):
    url = reverse("certificate_pkcs12", args=[cert.serial])
    if request_id is None:  # the requester's own, as the request page and the mail give it
        req = CertificateRequest.objects.filter(certificate=cert).first() if cert.pk else None
        request_id = req.display_id if req else "ABCD-EFGH-JKMN-PQRS-TVWX"
    fields = {"request_id": request_id, "passphrase": passphrase, "pkcs12_format": fmt}
    return client.post(url, fields, **extra)


def _key_stored(cert) -> bool:
    return bool(CertificateRequest.objects.get(certificate=cert).encrypted_private_key)


# --- the certificate page -----------------------------------------------------------


@pytest.mark.parametrize("style", ["colons-upper", "plain-lower", "0x"])
def test_certificate_page_by_serial_in_any_form(client, server_cert, style):
    """The page answers to the serial with colons, in any case, or with 0x."""
    typed = {
        "colons-upper": server_cert.serial_colons,
        "plain-lower": server_cert.serial,
        "0x": "0x" + server_cert.serial.upper(),
    }[style]
    assert client.get(reverse("certificate_detail", args=[typed])).status_code == 200


def test_certificate_page_shows_everything(client, server_cert):
    """Subject, issuer, serial, validity, status, SANs, key, both fingerprints, PEM and Copy."""
    html = client.get(reverse("certificate_detail", args=[server_cert.serial])).content.decode()
    for text in [
        "CN=www.example.test",
        "CN=Test Root CA",
        server_cert.serial_colons,
        f"{server_cert.not_after:%Y-%m-%d}",
        "Valid",
        "DNS:www.example.test",
        "EC P-256 (256 bits)",
        pki.fingerprint(server_cert.x509),
        pki.sha1_fingerprint(server_cert.x509),
        server_cert.pem.strip().splitlines()[1],
        'data-copy="certificate-pem"',
    ]:
        assert text in html, text


def test_server_certificate_install_notes(client, server_cert):
    """A server certificate's page explains nginx, Apache and HAProxy with the full chain."""
    html = client.get(reverse("certificate_detail", args=[server_cert.serial])).content.decode()
    for text in ["nginx", "Apache", "HAProxy", f"{server_cert.serial_filename}-fullchain.pem"]:
        assert text in html
    assert reverse("certificate_import", args=[server_cert.serial]) not in html
    assert "Your certificate and private key" not in html


def test_user_certificate_install_notes_and_import(client, ca, agent):
    """A personal certificate made from a CSR offers Import and notes for each client."""
    req = submit_confirmed(profile="user", csr=make_csr(cn="Bo"), requester_email="bo@example.test")
    cert = services.approve_request(req, agent=agent)
    html = client.get(reverse("certificate_detail", args=[cert.serial])).content.decode()
    for text in ["Firefox", "Chrome and Edge on Windows", "macOS", "Thunderbird"]:
        assert text in html
    assert reverse("certificate_import", args=[cert.serial]) in html
    assert reverse("certificate_download", args=[cert.serial, "p7b"]) in html
    assert "openssl pkcs12 -export" in html


def test_revoked_certificate_says_so(client, server_cert):
    """A revoked certificate shows its status and a warning."""
    Certificate.objects.filter(pk=server_cert.pk).update(
        status=Certificate.Status.REVOKED, revoked_at=timezone.now(), revocation_reason="superseded"
    )
    html = client.get(reverse("certificate_detail", args=[server_cert.serial])).content.decode()
    assert "Revoked" in html
    assert "Do not install it" in html


def test_unknown_serial_says_so(client, db):
    """An unknown serial is a 404 that says no certificate has it."""
    response = client.get(reverse("certificate_detail", args=["abcdef"]))
    assert response.status_code == 404
    assert "No certificate has that serial number" in response.content.decode()


def test_import_hands_over_user_cert(client, server_cert):
    """Import answers application/x-x509-user-cert with the DER certificate, inline."""
    response = client.get(reverse("certificate_import", args=[server_cert.serial]))
    assert response["Content-Type"] == "application/x-x509-user-cert"
    assert (
        response["Content-Disposition"] == f'inline; filename="{server_cert.serial_filename}.crt"'
    )
    assert x509.load_der_x509_certificate(response.content) == server_cert.x509


def test_import_unknown_serial_is_404(client, db):
    """Import of an unknown serial is a 404."""
    assert client.get(reverse("certificate_import", args=["abc"])).status_code == 404


def test_retrieval_link_leads_to_the_key_form(client, server_key_cert):
    """The mailed link opens the certificate page, whose key form has the request ID filled in
    and asks for the passphrase."""
    token = links.retrieval_token(server_key_cert)
    response = client.get(reverse("retrieve", args=[token]), follow=True)
    html = response.content.decode()
    page = reverse("certificate_detail", args=[server_key_cert.serial])
    assert (
        response.redirect_chain[-1][0] == f"{page}?request={server_key_cert.request.public_id}#key"
    )
    assert 'name="passphrase"' in html
    assert f'value="{server_key_cert.request.display_id}"' in html
    assert reverse("certificate_pkcs12", args=[server_key_cert.serial]) in html


def test_the_serial_alone_opens_no_key(client, server_key_cert):
    """Without the request ID the right passphrase gets no key, and is never tried."""
    response = _p12(client, server_key_cert, request_id="ABCD-EFGH-JKMN-PQRS-TVWX")
    assert response.status_code == 400
    assert "That is not the request ID of this certificate" in response.content.decode()
    assert _key_stored(server_key_cert)
    html = client.get(reverse("certificate_detail", args=[server_key_cert.serial])).content.decode()
    assert f'value="{server_key_cert.request.display_id}"' not in html
    assert _p12(client, server_key_cert).status_code == 200  # with it, and typed any way, it works


def test_tampered_link_reveals_nothing(client, server_key_cert):
    """An altered link shows the clear page and no certificate."""
    token = links.retrieval_token(server_key_cert)
    response = client.get(reverse("retrieve", args=[token[:-3] + "abc"]))
    html = response.content.decode()
    assert response.status_code == 404
    assert "This link does not work" in html
    assert server_key_cert.serial not in html


# --- enrollment with a server-made key ----------------------------------------------


def _enroll_key(client, **changes):
    data = {
        "requester_name": "Ada Lovelace",
        "requester_email": "ada@example.test",
        "passphrase": PASSPHRASE,
        "passphrase_confirm": PASSPHRASE,
        "note": "",
        **changes,
    }
    return client.post(reverse("enroll_server_key", args=["user"]), data)


def test_user_enrollment_offers_server_key(client, db):
    """The personal enrollment page and the home page link to enrollment without a CSR."""
    url = reverse("enroll_server_key", args=["user"])
    assert url in client.get(reverse("enroll", args=["user"])).content.decode()
    assert url in client.get(reverse("home")).content.decode()
    server_page = client.get(reverse("enroll", args=["server"])).content.decode()
    assert "server-key" not in server_page


def test_server_key_enrollment_page(client, db):
    """The page asks for name, email and the passphrase twice, as password fields."""
    html = client.get(reverse("enroll_server_key", args=["user"])).content.decode()
    assert html.count('type="password"') == 2
    assert 'autocomplete="new-password"' in html
    assert "never stored" in html


def test_server_key_enrollment_submits(client, ca, settings):
    """A valid form makes a pending request with a stored key and shows its status page."""
    settings.SERVER_KEY_TYPE = "p256"
    response = _enroll_key(client)
    req = CertificateRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == req.get_absolute_url()
    assert req.subject == "CN=Ada Lovelace"
    assert req.encrypted_private_key
    html = client.get(response["Location"]).content.decode()
    assert "your key is stored encrypted" in html
    assert "stored encrypted under your passphrase" in html


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"passphrase_confirm": "correct horse battery stapler"}, "The two passphrases differ"),
        ({"passphrase": "short", "passphrase_confirm": "short"}, "at least 12 characters"),
        (
            {"passphrase": "password1234", "passphrase_confirm": "password1234"},
            "common passwords",
        ),
        ({"requester_name": ""}, "This field is required."),
    ],
)
def test_server_key_enrollment_refusals(client, ca, changes, message):
    """A bad form is refused with a 400 and a message, and no request is made."""
    response = _enroll_key(client, **changes)
    html = response.content.decode()
    assert response.status_code == 400
    assert message in html
    assert PASSPHRASE not in html
    assert CertificateRequest.objects.count() == 0


def test_server_key_enrollment_rate_limit(client, ca, settings):
    """More enrollments per hour than the limit from one address are refused with 429."""
    settings.SERVER_KEY_TYPE = "p256"
    settings.SERVER_KEY_ENROLL_RATE_LIMIT = 1
    assert _enroll_key(client).status_code == 302
    response = _enroll_key(client)
    assert response.status_code == 429
    assert "Too many requests came from your address" in response.content.decode()
    assert CertificateRequest.objects.count() == 1


def test_server_key_enrollment_only_where_offered(client, db):
    """The server profile does not offer server-made keys."""
    response = client.get(reverse("enroll_server_key", args=["server"]))
    assert response.status_code == 404
    assert "needs a certificate signing request" in response.content.decode()


# --- downloading the .p12 -----------------------------------------------------------


def test_key_page_and_status_page_offer_the_download(client, server_key_cert):
    """The status page points to the download; the certificate page has the form and deadline."""
    status = client.get(server_key_cert.request.get_absolute_url()).content.decode()
    assert "Download your certificate and key" in status
    html = client.get(reverse("certificate_detail", args=[server_key_cert.serial])).content.decode()
    deadline = server_key_cert.created + dt.timedelta(days=14)
    assert "You can download it once" in html
    assert f"{deadline:%Y-%m-%d}" in html
    assert re.search(r'value="modern"[^>]*checked', html)


def test_mac_gets_compatible_format_preselected(server_key_cert):
    """A Mac browser finds the compatible format chosen for it."""
    mac = Client(headers={"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)"})
    html = mac.get(reverse("certificate_detail", args=[server_key_cert.serial])).content.decode()
    assert re.search(r'value="compatible"[^>]*checked', html)


def test_download_p12_once(client, server_key_cert, tmp_path):
    """The right passphrase gives the .p12 once; then the page says the key was erased."""
    response = _p12(client, server_key_cert)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs12"
    disposition = f'attachment; filename="{server_key_cert.serial_filename}.p12"'
    assert response["Content-Disposition"] == disposition
    assert response["Cache-Control"] == "no-store"
    key, cert, chain = pkcs12.load_key_and_certificates(response.content, PASSPHRASE.encode())
    assert cert == server_key_cert.x509
    assert pki.same_public_key(key, cert.public_key())
    assert chain == [server_key_cert.ca.certificate]
    assert not _key_stored(server_key_cert)

    html = client.get(reverse("certificate_detail", args=[server_key_cert.serial])).content.decode()
    assert "the key was then erased from this server" in html
    assert 'name="passphrase"' not in html
    again = _p12(client, server_key_cert, follow=True)
    assert "downloaded once already" in again.content.decode()
    assert again["Content-Type"].startswith("text/html")


def test_wrong_passphrase_gives_message_and_no_file(client, server_key_cert):
    """A wrong passphrase re-renders the page with a clear message; the key stays."""
    response = _p12(client, server_key_cert, passphrase="not my passphrase at all")
    html = response.content.decode()
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "That passphrase does not open your key" in html
    assert "not my passphrase at all" not in html
    assert _key_stored(server_key_cert)


def test_empty_passphrase_is_a_form_error(client, server_key_cert):
    """No passphrase at all is refused by the form."""
    response = _p12(client, server_key_cert, passphrase="")
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_repeated_wrong_passphrases_lock_the_form(client, server_key_cert, settings, monkeypatch):
    """After the free attempts the form locks, even for the right passphrase, until time passes."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 2
    settings.KEY_DOWNLOAD_LOCKOUT_SECONDS = 30
    now = [1_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    assert [
        _p12(client, server_key_cert, passphrase="wrong one " * 2).status_code for _ in range(2)
    ] == [
        400,
        400,
    ]
    third = _p12(client, server_key_cert, passphrase="wrong one " * 2)
    assert "Wait 30 seconds before you try again" in third.content.decode()

    locked = _p12(client, server_key_cert)
    assert locked.status_code == 429
    assert locked["Retry-After"] == "30"
    assert "Too many wrong passphrases" in locked.content.decode()
    assert _key_stored(server_key_cert)

    # The lockout is the certificate's, from every address (only request ID holders reach it).
    elsewhere = Client(REMOTE_ADDR="192.0.2.44")
    assert _p12(elsewhere, server_key_cert, passphrase="wrong one " * 2).status_code == 429

    now[0] += 31
    assert _p12(client, server_key_cert).status_code == 200


def test_lockout_grows(client, server_key_cert, settings, monkeypatch):
    """Each further wrong passphrase doubles the wait."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 0
    settings.KEY_DOWNLOAD_LOCKOUT_SECONDS = 60
    now = [2_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    waits = []
    for _ in range(3):
        html = _p12(client, server_key_cert, passphrase="wrong one " * 2).content.decode()
        waits.append(re.search(r"Wait (\d+ \w+)", html).group(1))
        now[0] += 10_000
    assert waits == ["60 seconds", "2 minutes", "4 minutes"]


def test_passphrase_never_logged(client, server_key_cert, caplog):
    """Neither a wrong nor the right passphrase appears in any log record."""
    with caplog.at_level(logging.DEBUG):
        _p12(client, server_key_cert, passphrase="wrong passphrase here")
        _p12(client, server_key_cert)
    assert "wrong passphrase for the key" in caplog.text
    assert "wrong passphrase here" not in caplog.text
    assert PASSPHRASE not in caplog.text


def test_p12_for_certificate_without_stored_key(client, server_cert):
    """A certificate whose key the requester made says the key was never here."""
    response = _p12(client, server_cert, follow=True)
    assert "never stored here" in response.content.decode()


def test_expired_key_page_says_erased(client, server_key_cert, settings):
    """Past the retention days the page says the key is gone and offers no form."""
    settings.SERVER_KEY_RETENTION_DAYS = 0
    html = client.get(reverse("certificate_detail", args=[server_key_cert.serial])).content.decode()
    assert "not downloaded within 0 days of issue" in html
    assert 'name="passphrase"' not in html


def test_p12_unknown_serial_is_404(client, db):
    """A download for an unknown serial is a 404."""
    assert _p12(client, Certificate(serial="abc")).status_code == 404


# --- the CA page --------------------------------------------------------------------


def test_ca_page_has_downloads_fingerprints_and_trust_notes(client, ca):
    """The CA page offers PEM, DER, PKCS#7 and Import, fingerprints, and notes per platform."""
    html = client.get(reverse("ca_page")).content.decode()
    for fmt in ("pem", "der", "p7b"):
        assert reverse("ca_certificate", args=[ca.pk, fmt]) in html
    assert reverse("ca_import", args=[ca.pk]) in html
    assert ca.fingerprint_sha256 in html
    for text in ["Windows", "macOS", "Firefox", "update-ca-certificates", "update-ca-trust"]:
        assert text in html


def test_ca_import_content_type(client, ca):
    """Import hands the browser the CA as application/x-x509-ca-cert."""
    response = client.get(reverse("ca_import", args=[ca.pk]))
    assert response["Content-Type"] == "application/x-x509-ca-cert"
    assert x509.load_der_x509_certificate(response.content) == ca.certificate


# --- the Content-Security-Policy ----------------------------------------------------


def test_csp_header_everywhere(client, server_cert, agent):
    """End-entity, agent and admin pages all carry the strict policy."""
    urls = [reverse("home"), reverse("certificate_detail", args=[server_cert.serial])]
    for url in urls:
        assert client.get(url)["Content-Security-Policy"] == CSP
    login_verified(client, agent)
    for url in [reverse("agent:request_list"), "/admin/", "/admin/requests_app/certificate/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == CSP


_INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(?!\s*</script>)", re.I),
    re.compile(r"<style\b", re.I),
    re.compile(r"\sstyle\s*=", re.I),
    re.compile(r"\son[a-z]+\s*=", re.I),
    re.compile(r"(src|href)=\"https?://", re.I),
]


def test_pages_have_no_inline_code_or_external_assets(client, server_key_cert, server_cert, agent):
    """No inline script, style or handler and nothing fetched from elsewhere, so the CSP holds."""
    req = server_cert.request
    urls = [
        reverse("home"),
        reverse("enroll", args=["server"]),
        reverse("enroll", args=["user"]),
        reverse("enroll_server_key", args=["user"]),
        req.get_absolute_url(),
        reverse("certificate_detail", args=[server_cert.serial]),
        reverse("certificate_detail", args=[server_key_cert.serial]),
        reverse("ca_page"),
        reverse("login"),
    ]
    agent_urls = [
        reverse("agent:request_list"),
        req.get_agent_url(),
        reverse("agent:certificate_issued", args=[req.public_id]),
    ]
    for url in [*urls, "agent", *agent_urls]:
        if url == "agent":
            login_verified(client, agent)
            continue
        html = client.get(url).content.decode()
        for pattern in _INLINE:
            assert not pattern.search(html), f"{url}: {pattern.pattern}"


def test_passphrase_hidden_from_error_reports(rf, server_key_cert, monkeypatch):
    """A crash while packing the .p12 leaves the passphrase out of Django's error report."""

    def explode(*args, **kwargs):
        raise RuntimeError("packing failed")

    monkeypatch.setattr(pki, "to_pkcs12", explode)
    fields = {"request_id": server_key_cert.request.public_id, "passphrase": PASSPHRASE}
    request = rf.post("/", {**fields, "pkcs12_format": "modern"})
    with pytest.raises(RuntimeError) as caught:
        ee.certificate_pkcs12(request, server_key_cert.serial)
    report = ExceptionReporter(request, caught.type, caught.value, caught.tb).get_traceback_text()
    assert "packing failed" in report
    assert "certificate_pkcs12" in report
    assert PASSPHRASE not in report
