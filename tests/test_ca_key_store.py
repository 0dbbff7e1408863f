"""The CA key store: an encrypted 0600 file, never in the database, read once per process."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from django.forms.models import model_to_dict

from requests_app import pki, services
from requests_app.keys import CAKeyError, backend_for, files, reset
from requests_app.models import AuditEvent, CertificateAuthority, CertificateRequest, NoCAError
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_path, read_ca_key


@pytest.fixture
def reads(monkeypatch):
    """Count the reads of key files, by wrapping the real reader."""
    calls = []
    real = files._read_key_file

    def spy(path):
        calls.append(path)
        time.sleep(0.01)  # widen the window in which concurrent first uses could race
        return real(path)

    monkeypatch.setattr(files, "_read_key_file", spy)
    return calls


def _issue(n: int = 1) -> list:
    return [
        services.issue_certificate(
            profile="server",
            csr=make_csr(cn=f"host{i}.example.test"),
            requester_email="admin@example.test",
        )
        for i in range(n)
    ]


def _key_secrets(key: pki.PrivateKey, file_bytes: bytes) -> list[str]:
    """Strings that would betray the key if found anywhere."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_body = "".join(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        .splitlines()[1:-1]
    )
    file_body = "".join(file_bytes.decode().splitlines()[1:-1])
    scalar = key.private_numbers().private_value
    return [
        "PRIVATE KEY",
        pem_body[:64],
        file_body[:64],
        base64.b64encode(der).decode()[:64],
        der.hex()[:64],
        format(scalar, "x"),
        str(scalar),
    ]


def _database_text() -> str:
    """Every text column of every CA row and every audit event's details, as one string."""
    parts = []
    for authority in CertificateAuthority.objects.all():
        parts.extend(str(value) for value in model_to_dict(authority).values())
    for event in AuditEvent.objects.all():
        parts.append(json.dumps(event.details))
        parts.append(event.action)
    return "\n".join(parts)


# --- the file ----------------------------------------------------------------------------


def test_key_file_is_encrypted_0600_in_ca_key_dir(ca, settings):
    """The key is a 0600 encrypted PKCS#8 file in CA_KEY_DIR (itself 0700) named by the CA row."""
    path = key_path(ca)
    assert path.parent == settings.CA_KEY_DIR
    assert path.name == ca.key_filename
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = pki.load_private_key(data, settings.CA_KEY_PASSPHRASE)
    assert pki.same_public_key(key, ca.certificate.public_key())


def test_write_key_file_never_overwrites(ca, settings):
    """A second key under the same file name is refused, and the first one is kept."""
    before = key_path(ca).read_bytes()
    with pytest.raises(FileExistsError):
        files._write_key_file(
            key_path(ca), pki.generate_private_key("p256"), settings.CA_KEY_PASSPHRASE
        )
    assert key_path(ca).read_bytes() == before


def test_the_key_is_never_in_the_database(ca, settings):
    """No CA column and no audit detail holds key material, after creation and issuance."""
    _issue(2)
    key = read_ca_key(ca)
    secrets = _key_secrets(key, key_path(ca).read_bytes())
    text = _database_text()
    assert ca.certificate_pem in text  # the search does see the CA rows
    for secret in secrets:
        assert secret not in text
    assert settings.CA_KEY_PASSPHRASE not in text


def test_an_imported_key_is_never_in_the_database(db, tmp_path):
    """An imported (unencrypted) key is re-encrypted to a file and never stored in a row."""
    key, cert = pki.create_ca("CN=Imported Root,C=US", key_type="p256")
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    authority = services.import_ca(pki.to_pem(cert).encode(), plain)
    file_bytes = key_path(authority).read_bytes()
    assert file_bytes.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    text = _database_text()
    for secret in [*_key_secrets(key, file_bytes), plain.decode().splitlines()[1]]:
        assert secret not in text


# --- read once -----------------------------------------------------------------------------


def test_the_key_is_read_once_for_many_certificates(ca, reads):
    """Five issued certificates read the key file once."""
    certs = _issue(5)
    assert len(certs) == 5
    assert reads == [key_path(ca)]


def test_concurrent_first_use_reads_once(ca, reads):
    """Threads that all need the key at the same moment share one read."""
    barrier = threading.Barrier(8)
    keys, errors = [], []

    def use():
        try:
            barrier.wait()
            keys.append(backend_for(ca)._private_key(ca))
        except Exception as exc:  # pragma: no cover - reported by the asserts below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert len(keys) == 8
    assert all(k is keys[0] for k in keys)
    assert len(reads) == 1


def test_forget_keys_makes_the_next_use_read_again(ca, reads):
    """forget_keys drops the cache (for a process that rotates its CA)."""
    backend_for(ca).check_usable(ca)
    backend_for(ca).check_usable(ca)
    reset()
    backend_for(ca).check_usable(ca)
    assert len(reads) == 2


def test_each_ca_has_its_own_cached_key(ca, reads):
    """A second CA's key is read and cached separately."""
    second = services.create_ca("CN=Second Root,C=US", force=True)
    assert not pki.same_public_key(
        backend_for(ca)._private_key(ca), backend_for(second)._private_key(second)
    )
    backend_for(ca).check_usable(ca)
    backend_for(second).check_usable(second)
    assert sorted(p.name for p in reads) == sorted([ca.key_filename, second.key_filename])


def test_changing_the_passphrase_setting_drops_the_cache(ca, settings, reads):
    """A key cached under the old CA_KEY_PASSPHRASE is not used once the setting changes."""
    backend_for(ca).check_usable(ca)
    settings.CA_KEY_PASSPHRASE = "another-passphrase"
    with pytest.raises(CAKeyError):
        backend_for(ca).check_usable(ca)
    assert len(reads) == 2


# --- refusals ------------------------------------------------------------------------------


def test_a_wrong_passphrase_is_one_clear_error(ca, settings):
    """A wrong CA_KEY_PASSPHRASE gives one CAKeyError naming the CA, in our words only."""
    settings.CA_KEY_PASSPHRASE = "not-the-passphrase"
    with pytest.raises(CAKeyError) as caught:
        backend_for(ca).check_usable(ca)
    message = str(caught.value)
    assert message == (
        "could not open the key of CA 'Test Root CA': wrong passphrase, or not a private key "
        "in PEM/DER (check CA_KEY_PASSPHRASE)"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    for noise in ("Traceback", "cryptography", "Bad decrypt", "Incorrect password"):
        assert noise not in message


def test_a_wrong_passphrase_keeps_the_request_pending(pending_request, agent, settings):
    """Approval with an unusable key is refused as CAUnavailable and changes nothing."""
    settings.CA_KEY_PASSPHRASE = "not-the-passphrase"
    with pytest.raises(services.CAUnavailable, match="cannot issue: could not open the key of CA"):
        services.approve_request(pending_request.public_id, agent=agent)
    pending_request.refresh_from_db()
    assert pending_request.status == CertificateRequest.Status.PENDING


def test_an_empty_passphrase_says_so(ca, settings):
    """With no CA_KEY_PASSPHRASE at all, the error says the key is encrypted."""
    settings.CA_KEY_PASSPHRASE = ""
    with pytest.raises(CAKeyError, match="is encrypted and no passphrase was given"):
        backend_for(ca).check_usable(ca)


def test_a_missing_key_file_is_a_clear_error(ca):
    """A deleted key file is named in the error."""
    key_path(ca).unlink()
    with pytest.raises(CAKeyError) as caught:
        backend_for(ca).check_usable(ca)
    assert str(caught.value) == (
        f"the key of CA 'Test Root CA' is missing: no file {ca.key_filename} in CA_KEY_DIR"
    )


def test_a_key_file_for_another_key_is_refused(ca, settings):
    """A key file that does not belong to the CA's certificate is refused."""
    path = key_path(ca)
    path.write_bytes(
        pki.encrypt_private_key(pki.generate_private_key("p256"), settings.CA_KEY_PASSPHRASE)
    )
    with pytest.raises(CAKeyError, match="does not match its certificate"):
        backend_for(ca).check_usable(ca)


def test_an_unreadable_key_path_is_a_clear_error(ca):
    """A directory where the key file should be is reported, not raised raw."""
    path = key_path(ca)
    path.unlink()
    path.mkdir()
    with pytest.raises(CAKeyError, match="the key file of CA 'Test Root CA' cannot be"):
        backend_for(ca).check_usable(ca)


def test_default_ca_and_its_urls(db, settings):
    """Without a CA the default is a NoCAError; with one, its URLs hang off
    REVOCATION_BASE_URL (http), not off SITE_URL (https)."""
    with pytest.raises(NoCAError, match=r"run manage\.py init_ca or import_ca"):
        CertificateAuthority.objects.default()
    authority = services.create_ca("CN=URL Root,C=US")
    settings.SITE_URL = "https://ca.example.com"
    settings.REVOCATION_BASE_URL = "http://pki.example.com"
    assert CertificateAuthority.objects.default() == authority
    assert authority.ca_issuers_url() == f"http://pki.example.com/ca/{authority.pk}/ca.cer"
    assert authority.crl_url() == f"http://pki.example.com/ca/{authority.pk}/crl.crl"
    assert authority.ocsp_url() == "http://pki.example.com/ocsp"
