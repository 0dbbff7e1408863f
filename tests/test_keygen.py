"""Server-side keys: sealing, the services that make, hand over and erase them, the throttle."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import call_command
from django.utils import timezone

from requests_app import pki, services, throttle
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers.keys import read_ca_key
from tests.helpers.mailbox import confirmed

PASSPHRASE = "correct horse battery staple"


pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture
def key_request(ca):
    """A pending personal request whose key the portal made."""
    return confirmed(
        services.submit_request_with_server_key(
            profile="user",
            passphrase=PASSPHRASE,
            requester_email="ada@example.test",
            requester_name="Ada Lovelace",
            ip="192.0.2.10",
        )
    )


@pytest.fixture
def key_cert(key_request, agent):
    """The key request approved: its certificate."""
    return services.approve_request(key_request, agent=agent)


def _actions(req: CertificateRequest) -> list[str]:
    return list(req.audit_events.values_list("action", flat=True))


# --- keygen -------------------------------------------------------------------------


def test_seal_and_unseal_round_trip():
    """A sealed key opens with its passphrase and is the same key."""
    key = pki.generate_private_key("p256")
    sealed = pki.seal(key, PASSPHRASE)
    assert sealed.startswith("scrypt-pkcs8 n=32768 r=8 p=1 salt=")
    assert "-----BEGIN ENCRYPTED PRIVATE KEY-----" in sealed
    assert pki.same_public_key(pki.unseal(sealed, PASSPHRASE), key)


def test_sealed_key_needs_the_stretched_passphrase():
    """The PKCS#8 inside does not open with the raw passphrase: scrypt comes first."""
    sealed = pki.seal(pki.generate_private_key("p256"), PASSPHRASE)
    pem = sealed.partition("\n")[2].encode()
    with pytest.raises(pki.CAError):
        pki.load_private_key(pem, PASSPHRASE)


@pytest.mark.parametrize("wrong", ["", "correct horse battery stapler", PASSPHRASE.upper()])
def test_unseal_refuses_wrong_passphrase(wrong):
    """A wrong passphrase raises WrongPassphrase."""
    sealed = pki.seal(pki.generate_private_key("p256"), PASSPHRASE)
    with pytest.raises(pki.WrongPassphrase):
        pki.unseal(sealed, wrong)


def test_unseal_refuses_foreign_format():
    """Text that seal() did not write is refused with a PKIError."""
    with pytest.raises(pki.PKIError, match="not in a format"):
        pki.unseal("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", PASSPHRASE)


def test_short_passphrase_is_refused():
    """Eleven characters are one too few."""
    with pytest.raises(pki.PKIError, match="at least 12 characters"):
        pki.seal(pki.generate_private_key("p256"), "x" * 11)


def test_build_csr_names_the_person():
    """The CSR carries CN=name and verifies; a name over 64 characters is refused, not cut."""
    key = pki.generate_private_key("p256")
    info = pki.check_csr(pki.build_csr(key, "A" * 64))
    assert info.subject == "CN=" + "A" * 64
    with pytest.raises(pki.CSRError, match="1 to 64 characters"):
        pki.build_csr(key, "A" * 65)
    assert pki.same_public_key(info.csr.public_key(), key)


def test_compatible_pkcs12_opens_with_openssl(ca, tmp_path):
    """The compatible PKCS#12 uses 3DES and a SHA-1 MAC and opens with its passphrase."""
    key = read_ca_key(ca)  # any matching key and certificate will do
    data = pki.to_pkcs12(key, ca.certificate, [], PASSPHRASE, name="Ada", fmt="compatible")
    path = tmp_path / "ada.p12"
    path.write_bytes(data)
    env = {**os.environ, "P12PASS": PASSPHRASE}
    result = subprocess.run(
        ["openssl", "pkcs12", "-in", str(path), "-info", "-noout", "-passin", "env:P12PASS"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "MAC: sha1" in result.stderr
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in result.stderr


# --- submit with a server-made key --------------------------------------------------


def test_submit_with_server_key_stores_only_the_sealed_key(key_request):
    """The request holds a CSR for CN=name, the email SAN, and the sealed RSA 2048 key."""
    req = key_request
    assert req.status == CertificateRequest.Status.PENDING
    assert req.subject == "CN=Ada Lovelace"
    assert req.requested_sans == ["email:ada@example.test"]
    assert (req.key_type, req.key_size) == ("rsa2048", 2048)
    assert PASSPHRASE not in req.encrypted_private_key
    key = pki.unseal(req.encrypted_private_key, PASSPHRASE)
    assert pki.public_key_sha256(key.public_key()) == req.public_key_sha256
    assert _actions(req)[0] == "request_submitted"
    assert "server_key_generated" in _actions(req)
    assert AuditEvent.objects.get(action="server_key_generated").details == {"key_type": "rsa2048"}


def test_passphrase_is_in_no_audit_row(key_cert):
    """Neither submission nor download writes the passphrase anywhere in the audit log."""
    services.download_server_key(key_cert.request, passphrase=PASSPHRASE)
    for details in AuditEvent.objects.values_list("details", flat=True):
        assert PASSPHRASE not in str(details)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"passphrase": "short"}, "passphrase"),
        ({"profile": "server"}, "profile"),
        ({"requester_name": "  "}, "requester_name"),
        ({"requester_name": "Eve\nBcc: x"}, "requester_name"),
        ({"requester_email": "not-an-address"}, "requester_email"),
    ],
)
def test_submit_with_server_key_refusals(ca, changes, field):
    """Bad input is refused on its field and nothing is written."""
    fields = {
        "profile": "user",
        "passphrase": PASSPHRASE,
        "requester_email": "ada@example.test",
        "requester_name": "Ada",
    }
    with pytest.raises(services.InvalidRequest) as caught:
        services.submit_request_with_server_key(**{**fields, **changes})
    assert caught.value.field == field
    assert CertificateRequest.objects.count() == 0
    assert not AuditEvent.objects.exclude(action="ca_created").exists()


def test_key_type_follows_setting(ca, settings):
    """SERVER_KEY_TYPE chooses the key the portal makes."""
    settings.SERVER_KEY_TYPE = "p256"
    req = services.submit_request_with_server_key(
        profile="user", passphrase=PASSPHRASE, requester_email="a@example.test", requester_name="A"
    )
    assert req.key_type == "p256"


# --- download -----------------------------------------------------------------------


def test_download_returns_pkcs12_and_erases_the_key(key_cert):
    """The PKCS#12 holds key, certificate and CA; the stored key is then gone, with audit rows."""
    data = services.download_server_key(key_cert.request, passphrase=PASSPHRASE, ip="192.0.2.9")
    key, cert, extra = pkcs12.load_key_and_certificates(data, PASSPHRASE.encode())
    assert cert == key_cert.x509
    assert pki.same_public_key(key, cert.public_key())
    assert extra == [key_cert.ca.certificate]
    req = CertificateRequest.objects.get(pk=key_cert.request.pk)
    assert req.encrypted_private_key == ""
    assert req.key_erased_at is not None
    assert _actions(req)[-2:] == ["private_key_downloaded", "private_key_erased"]
    erased = req.audit_events.get(action="private_key_erased")
    assert (erased.details, erased.ip, erased.actor_label) == (
        {"reason": "downloaded"},
        "192.0.2.9",
        "requester",
    )
    state = services.server_key_state(req)
    assert (state.stored, state.erased_because) == (False, "downloaded")


def test_second_download_is_refused(key_cert):
    """The key is handed over once; a second try says it was downloaded already."""
    services.download_server_key(key_cert.request, passphrase=PASSPHRASE)
    with pytest.raises(services.KeyNotAvailable, match="downloaded once already"):
        services.download_server_key(key_cert.request, passphrase=PASSPHRASE)


def test_wrong_passphrase_writes_nothing(key_cert):
    """A wrong passphrase is refused and the key stays, with no new audit row."""
    before = AuditEvent.objects.count()
    with pytest.raises(services.WrongPassphrase) as caught:
        services.download_server_key(key_cert.request, passphrase="not the passphrase")
    assert caught.value.field == "passphrase"
    assert AuditEvent.objects.count() == before
    assert CertificateRequest.objects.get(pk=key_cert.request.pk).encrypted_private_key


def test_download_before_issue_is_refused(key_request):
    """A pending request's key cannot be downloaded yet."""
    with pytest.raises(services.InvalidTransition, match="once the certificate is issued"):
        services.download_server_key(key_request, passphrase=PASSPHRASE)


def test_download_of_own_key_certificate_is_refused(pending_request, agent):
    """A certificate whose requester made the key has nothing stored here."""
    cert = services.approve_request(pending_request, agent=agent)
    with pytest.raises(services.KeyNotAvailable, match="never stored here"):
        services.download_server_key(cert.request, passphrase=PASSPHRASE)


def test_download_compatible_format(key_cert):
    """The compatible format is a PKCS#12 the same passphrase opens."""
    data = services.download_server_key(
        key_cert.request, passphrase=PASSPHRASE, pkcs12_format="compatible"
    )
    assert pkcs12.load_key_and_certificates(data, PASSPHRASE.encode())[1] == key_cert.x509
    event = AuditEvent.objects.get(action="private_key_downloaded")
    assert event.details["pkcs12_format"] == "compatible"


def test_download_unknown_format_is_refused(key_cert):
    """Only the two PKCS#12 formats exist."""
    with pytest.raises(services.InvalidRequest, match="unknown PKCS#12 format"):
        services.download_server_key(key_cert.request, passphrase=PASSPHRASE, pkcs12_format="x")


def test_download_after_deadline_erases_and_refuses(key_cert, settings):
    """Past the retention days a download erases the key (committed) and says why."""
    settings.SERVER_KEY_RETENTION_DAYS = 0
    with pytest.raises(services.KeyNotAvailable, match="within 0 days of issue"):
        services.download_server_key(key_cert.request, passphrase=PASSPHRASE)
    req = CertificateRequest.objects.get(pk=key_cert.request.pk)
    assert req.encrypted_private_key == ""
    assert req.audit_events.get(action="private_key_erased").details == {"reason": "expired"}


# --- erase_expired_keys -------------------------------------------------------------


def test_erase_expired_keys_respects_the_deadline(key_cert, settings):
    """Keys younger than the retention days stay; older ones are erased with an audit row."""
    settings.SERVER_KEY_RETENTION_DAYS = 14
    assert services.erase_expired_server_keys() == 0
    later = timezone.now() + dt.timedelta(days=14, seconds=1)
    assert services.erase_expired_server_keys(now=later) == 1
    req = CertificateRequest.objects.get(pk=key_cert.request.pk)
    assert req.encrypted_private_key == ""
    event = req.audit_events.get(action="private_key_erased")
    assert (event.actor_label, event.details) == ("system", {"reason": "expired"})
    assert services.erase_expired_server_keys(now=later) == 0


def test_erase_expired_keys_clears_closed_requests(key_request, agent):
    """A rejected request's key is of no use and is erased at the next run."""
    services.reject_request(key_request, agent=agent, reason="Not one of ours.")
    assert services.erase_expired_server_keys() == 1
    event = AuditEvent.objects.get(action="private_key_erased")
    assert event.details == {"reason": "request_rejected"}


def test_erase_expired_keys_keeps_pending(key_request):
    """A pending request keeps its key: it is needed once an agent approves."""
    later = timezone.now() + dt.timedelta(days=365)
    assert services.erase_expired_server_keys(now=later) == 0


def test_erase_expired_keys_command(key_cert, settings):
    """The command erases and reports how many keys it erased."""
    from io import StringIO

    settings.SERVER_KEY_RETENTION_DAYS = 0
    out = StringIO()
    call_command("erase_expired_keys", stdout=out)
    assert "Erased 1 private key (kept for 0 days after issue)." in out.getvalue()
    assert not CertificateRequest.objects.get(pk=key_cert.request.pk).encrypted_private_key


# --- throttle -----------------------------------------------------------------------


def test_throttle_grows_the_lockout(settings, monkeypatch):
    """Free attempts first, then lockouts that double up to the maximum, and clear on success."""
    settings.KEY_DOWNLOAD_FREE_ATTEMPTS = 2
    settings.KEY_DOWNLOAD_LOCKOUT_SECONDS = 30
    settings.KEY_DOWNLOAD_LOCKOUT_MAX_SECONDS = 100
    now = [1_000_000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    scope = "key-download:abc:192.0.2.1"
    assert [throttle.record_failure(scope) for _ in range(5)] == [0, 0, 30, 60, 100]
    assert throttle.lockout_remaining(scope) == 100
    assert throttle.lockout_remaining("key-download:abc:192.0.2.2") == 0
    now[0] += 99.5
    assert throttle.lockout_remaining(scope) == 1
    now[0] += 1
    assert throttle.lockout_remaining(scope) == 0
    throttle.clear_failures(scope)
    assert throttle.record_failure(scope) == 0


def test_rate_limit_window(monkeypatch):
    """A fixed window allows limit uses, refuses the next, and opens again in the next window."""
    now = [7200.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    assert [throttle.within_rate("x", "2/3600") for _ in range(3)] == [
        True,
        True,
        False,
    ]
    now[0] += 3600
    assert throttle.within_rate("x", "2/3600")


def test_certificate_of_key_request_names_the_email(key_cert):
    """The issued certificate carries the requester's email as its only SAN."""
    sans = key_cert.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in sans] == ["ada@example.test"]
