"""The CA key store: encrypted PKCS#8 files in CA_KEY_DIR, read once per process and cached.

The key never enters the database or a log; only its file name is stored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import pki
from .models import CertificateAuthority

logger = logging.getLogger(__name__)


class CAKeyError(pki.CAError):
    """The CA key file is missing or cannot be opened with the configured passphrase."""


class NoCAError(pki.CAError):
    """No CA has been created or imported yet."""


_cache: dict[str, pki.PrivateKey] = {}
_lock = threading.Lock()


def key_dir() -> Path:
    """CA_KEY_DIR, where the encrypted key files live."""
    return Path(settings.CA_KEY_DIR)


def key_path(ca: CertificateAuthority) -> Path:
    """The path of the CA's key file."""
    return key_dir() / ca.key_filename


def write_key_file(filename: str, key: pki.PrivateKey) -> Path:
    """Write the key encrypted under CA_KEY_PASSPHRASE, mode 0600, never overwriting a file."""
    directory = key_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / filename
    data = pki.encrypt_private_key(key, settings.CA_KEY_PASSPHRASE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _read_key_file(path: Path) -> bytes:
    """The one place the key file is read (tests count the calls)."""
    return path.read_bytes()


def load_key(ca: CertificateAuthority) -> pki.PrivateKey:
    """The CA's private key, read from disk on first use in this process, then cached."""
    key = _cache.get(ca.key_filename)
    if key is not None:
        return key
    with _lock:  # one reader per process: concurrent first signatures must not all decrypt
        key = _cache.get(ca.key_filename)
        if key is None:
            key = _open_key(ca)
            _cache[ca.key_filename] = key
    return key


def _open_key(ca: CertificateAuthority) -> pki.PrivateKey:
    path = key_path(ca)
    try:
        data = _read_key_file(path)
    except FileNotFoundError:
        raise CAKeyError(
            f"the key of CA '{ca.name}' is missing: no file {ca.key_filename} in CA_KEY_DIR"
        ) from None
    except PermissionError:
        raise CAKeyError(f"the key file of CA '{ca.name}' cannot be read (permissions)") from None
    except OSError as exc:
        raise CAKeyError(
            f"the key file of CA '{ca.name}' cannot be read: {exc.strerror or exc}"
        ) from None
    try:
        key = pki.load_private_key(
            data, settings.CA_KEY_PASSPHRASE, what=f"the key of CA '{ca.name}'"
        )
    except pki.CAError as exc:
        raise CAKeyError(f"{exc} (check CA_KEY_PASSPHRASE)") from None
    if not pki.same_public_key(key, ca.certificate.public_key()):
        raise CAKeyError(f"the key file of CA '{ca.name}' does not match its certificate")
    logger.info("loaded the key of CA %s", ca.name)
    return key


def forget_keys() -> None:
    """Drop cached keys (tests; a process that rotates its CA)."""
    with _lock:
        _cache.clear()
    forget_default_ca()


@receiver(setting_changed)
def _forget_keys_on_new_settings(*, setting, **kwargs):
    # A key cached under another directory or passphrase must not outlive the change.
    if setting in ("CA_KEY_DIR", "CA_KEY_PASSPHRASE"):
        forget_keys()


_default: tuple[float, CertificateAuthority] | None = None
DEFAULT_CA_TTL = 5.0  # seconds a process keeps its answer; a new default CA is seen after that


def default_ca() -> CertificateAuthority:
    """The CA that signs new certificates, or NoCAError.

    Kept for a few seconds per process: every approval asks, and the answer (with its parsed
    certificate) changes only when an administrator makes a new default CA."""
    global _default
    now = time.monotonic()
    if _default is not None and now - _default[0] < DEFAULT_CA_TTL:
        return _default[1]
    ca = CertificateAuthority.objects.filter(is_default=True).first()
    if ca is None:
        raise NoCAError("no CA exists yet: run manage.py init_ca or import_ca first")
    _default = (now, ca)
    return ca


def forget_default_ca() -> None:
    """Ask the database again next time (called when this process changes the default)."""
    global _default
    _default = None


def ca_issuers_url(ca: CertificateAuthority) -> str:
    """Where issued certificates say their issuer's certificate can be downloaded (DER)."""
    return f"{settings.SITE_URL}/ca/{ca.pk}/ca.cer"


def crl_url(ca: CertificateAuthority) -> str:
    """The CRL distribution point named in issued certificates (served by the revocation work)."""
    return f"{settings.SITE_URL}/ca/{ca.pk}/crl.crl"
