"""CA_KEY_BACKENDS: the handler, its system check, and the file backend's promises (it signs,
it never hands out a private key, it reads each key once, it notices a new responder)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp as x509_ocsp
from django.core.exceptions import ImproperlyConfigured

from requests_app import keys, pki, services
from requests_app.keys import KeyBackend, NewKey, files
from requests_app.keys.checks import check_key_backends
from requests_app.keys.files import EncryptedFileBackend
from requests_app.revocation import ocsp
from requests_app.services import crls
from tests.helpers.csrs import make_csr
from tests.helpers.keys import key_path

FILE_BACKEND = "requests_app.keys.files.EncryptedFileBackend"
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)


def _issue(cn: str = "host.example.test"):
    return services.issue_certificate(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


def _ocsp_request(cert) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(
        cert.x509,
        cert.ca.certificate,
        hashes.SHA1(),  # noqa: S303 - the CertID hash most clients send
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


# --- the handler -------------------------------------------------------------------------


def test_the_default_setting_is_the_encrypted_file_backend(settings):
    """Out of the box, "default" is the encrypted-file backend on CA_KEY_DIR."""
    backend = keys.backends[keys.DEFAULT_ALIAS]
    assert isinstance(backend, EncryptedFileBackend)
    assert backend.alias == "default"
    assert backend.directory == settings.CA_KEY_DIR


def test_one_backend_per_alias_per_process():
    """Every caller, in every thread, gets the same backend instance until a reset."""
    first = keys.backends["default"]
    assert keys.backends["default"] is first
    keys.reset()
    assert keys.backends["default"] is not first


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"BACKEND": "requests_app.keys.nowhere.Backend"}, "cannot import BACKEND"),
        ({"BACKEND": "requests_app.models.Certificate"}, "is not a subclass of"),
        ({"BACKEND": FILE_BACKEND, "OPTIONS": {"pin": "1234"}}, "does not take the OPTIONS"),
        ({"BACKEND": FILE_BACKEND, "LOCATION": "/tmp"}, "has unknown keys"),
    ],
    ids=["bad-path", "not-a-backend", "unknown-option", "unknown-key"],
)
def test_a_bad_entry_is_improperly_configured(settings, config, message):
    """A bad BACKEND or OPTIONS names the alias and what is wrong."""
    settings.CA_KEY_BACKENDS = {"default": config}
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        keys.backends["default"]
    assert "CA_KEY_BACKENDS['default']" in str(caught.value)


def test_an_unknown_alias_is_improperly_configured():
    """Asking for an alias that is not configured says which ones are."""
    with pytest.raises(ImproperlyConfigured, match=r"no key backend 'hsm'.*configured: default"):
        keys.backends["hsm"]


def test_the_system_check_reports_bad_entries(settings):
    """manage.py check refuses a bad entry and a missing "default" at start-up."""
    assert check_key_backends() == []
    settings.CA_KEY_BACKENDS = {
        "token": {"BACKEND": "requests_app.keys.nowhere.Backend"},
        "files": {"BACKEND": FILE_BACKEND, "OPTIONS": {"colour": "blue"}},
    }
    errors = check_key_backends()
    assert [error.id for error in errors] == ["ca.E011", "ca.E011", "ca.E012"]
    assert "CA_KEY_BACKENDS['token']: cannot import BACKEND" in errors[0].msg
    assert "'colour'" in errors[1].msg
    assert "has no 'default'" in errors[2].msg


def test_changing_the_setting_resets_the_backends(settings):
    """A new CA_KEY_BACKENDS takes effect at once (the setting_changed hook)."""
    before = keys.backends["default"]
    settings.CA_KEY_BACKENDS = {"default": {"BACKEND": FILE_BACKEND, "OPTIONS": {}}}
    assert keys.backends["default"] is not before


def test_file_backend_options_override_the_settings(db, settings, tmp_path):
    """OPTIONS directory and passphrase replace CA_KEY_DIR and CA_KEY_PASSPHRASE."""
    directory = tmp_path / "elsewhere"
    settings.CA_KEY_BACKENDS = {
        "default": {
            "BACKEND": FILE_BACKEND,
            "OPTIONS": {"directory": str(directory), "passphrase": "an-option-passphrase"},
        }
    }
    ca = services.create_ca("CN=Option Root,C=US")
    assert ca.key_backend == "default"
    assert key_path(ca).parent == directory
    data = key_path(ca).read_bytes()
    assert pki.same_public_key(
        pki.load_private_key(data, "an-option-passphrase"), ca.certificate.public_key()
    )
    assert not settings.CA_KEY_DIR.exists()
    assert _issue().ca == ca


def test_a_backend_without_a_hook_says_which(db):
    """An unimplemented hook raises NotImplementedError naming the backend class."""

    class HalfBackend(KeyBackend):
        pass

    with pytest.raises(NotImplementedError, match="HalfBackend does not implement sign_crl"):
        HalfBackend("half").sign_crl(None, None)


# --- the file backend never hands out a private key -------------------------------------


def _public_methods(cls) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


def _holds_private_key(value) -> bool:
    if isinstance(value, PRIVATE_KEY_TYPES):
        return True
    if isinstance(value, tuple | list):
        return any(_holds_private_key(item) for item in value)
    return False


def test_no_public_function_returns_a_private_key(db, monkeypatch, settings):
    """Every public method of the file backend, run through a CA's whole life, returns
    certificates, bytes, paths or handles, and never a private key object."""
    returned: dict[str, list] = {}
    for name in _public_methods(EncryptedFileBackend):
        member = inspect.getattr_static(EncryptedFileBackend, name)
        if isinstance(member, property):
            continue

        def recording(self, *args, _name=name, _real=member, **kwargs):
            value = _real(self, *args, **kwargs)
            returned.setdefault(_name, []).append(value)
            return value

        monkeypatch.setattr(EncryptedFileBackend, name, recording)

    ca = services.create_ca("CN=Life Root,C=US")
    cert = _issue()
    services.publish_crl(ca)
    services.create_ocsp_responder(validity_days=7)
    assert ocsp.respond(_ocsp_request(cert))
    backend = keys.backend_for(ca)
    backend.key_location(ca)
    backend.key_path(ca)
    backend.responder_cert_path(ca)
    backend.responder_key_filename(ca, cert.x509)
    key, root = pki.create_ca("CN=Imported Root,C=US")
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    services.import_ca(pki.to_pem(root).encode(), plain, force=True)
    pending = services.request_subordinate_ca("CN=Pending Sub,C=US")  # key before certificate
    keys.backend_for(pending).check_key_options(pending)  # import_ca --certificate's check
    services.rewrap_keys()
    keys.reset()  # closes every backend

    methods = {
        name
        for name in _public_methods(EncryptedFileBackend)
        if not isinstance(inspect.getattr_static(EncryptedFileBackend, name), property)
    }
    assert methods <= set(returned), f"not exercised: {sorted(methods - set(returned))}"
    for name, values in returned.items():
        for value in values:
            assert not _holds_private_key(value), f"{name}() returned a private key"
    for new_key in returned["generate_key"] + returned["import_key"]:
        assert isinstance(new_key, NewKey)
        assert not _holds_private_key([getattr(new_key, a) for a in ("public_key", "key_type")])
        assert "PRIVATE" not in repr(new_key)


# --- read once, reload the responder when its file changes --------------------------------


def test_the_ca_key_is_read_once_across_certificates_crls_and_ocsp(ca, monkeypatch):
    """Issuing, publishing a CRL and answering OCSP share one read of the key file."""
    reads = []
    real = files._read_key_file
    monkeypatch.setattr(files, "_read_key_file", lambda path: reads.append(path) or real(path))
    cert = _issue()
    services.publish_crl(ca)
    ocsp.respond(_ocsp_request(cert))
    crls.newest(ca)
    assert reads == [key_path(ca)]


def test_a_responder_written_by_another_process_is_picked_up(ca, monkeypatch):
    """A responder swapped in by another process signs the next answer; an unchanged file
    is not read again."""
    loads = []
    real = EncryptedFileBackend._load_responder

    def counting(self, *args):
        loads.append(args)
        return real(self, *args)

    monkeypatch.setattr(EncryptedFileBackend, "_load_responder", counting)
    cert = _issue()
    first = services.create_ocsp_responder(validity_days=7)
    for _ in range(3):
        answer = x509_ocsp.load_der_ocsp_response(ocsp.respond(_ocsp_request(cert)))
        assert answer.certificates == [first]
    assert len(loads) == 1

    # Another process: its own backend instance writes a new responder into the same files.
    other = EncryptedFileBackend("default")
    new_key = other.generate_key("p256")
    second = other.sign_certificate(
        ca,
        pki.ocsp_responder_builder(
            ca_cert=ca.certificate, public_key=new_key.public_key, validity_days=7
        ),
    )
    path = keys.backend_for(ca).responder_cert_path(ca)
    before = path.stat().st_mtime_ns
    other.store_ocsp_responder(ca, new_key, second)
    if path.stat().st_mtime_ns == before:  # a coarse clock: make the change visible
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))
    answer = x509_ocsp.load_der_ocsp_response(ocsp.respond(_ocsp_request(cert)))
    assert answer.certificates == [second]
    assert len(loads) == 2


# --- pki stays pure -----------------------------------------------------------------------


def test_pki_imports_no_django():
    """Importing requests_app.pki loads no Django module (the engine is pure cryptography)."""
    code = (
        "import sys, requests_app.pki; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "False"
