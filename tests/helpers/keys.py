"""Reaching into the file key backend, as only tests may: where a CA's key file is, and the
key itself (decrypted from the file, never from the backend, which does not hand keys out)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from requests_app import keys, pki
from requests_app.models import CertificateAuthority


def key_path(ca: CertificateAuthority) -> Path:
    """The path of the CA's encrypted key file."""
    return keys.backend_for(ca).key_path(ca)


def key_dir() -> Path:
    """The directory of the default key backend (CA_KEY_DIR)."""
    return keys.backends[keys.DEFAULT_ALIAS].directory


def read_ca_key(ca: CertificateAuthority) -> pki.PrivateKey:
    """The CA's private key, decrypted from its file under CA_KEY_PASSPHRASE."""
    return pki.load_private_key(key_path(ca).read_bytes(), settings.CA_KEY_PASSPHRASE)
