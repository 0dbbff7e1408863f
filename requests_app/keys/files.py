"""The encrypted-file key backend: each key an encrypted PKCS#8 file (mode 0600) in a
directory (CA_KEY_DIR), under one passphrase (CA_KEY_PASSPHRASE).

A CA's key is `ca-<serial[:24]>.key.pem`; its delegated OCSP responder is
`ocsp-<ca id>.cert.pem` with the key `ocsp-<ca id>-<responder serial[:24]>.key.pem`. Each key
is read once per process and kept in memory; a responder is read again when its certificate
file changes (another process ran create_ocsp_responder).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from django.conf import settings

from .. import pki
from .base import CAKeyError, KeyBackend, NewKey, Rewrapped

if TYPE_CHECKING:
    from ..models import CertificateAuthority

logger = logging.getLogger(__name__)


def _read_key_file(path: Path) -> bytes:
    """The one place a CA key file is read (tests count the calls)."""
    return path.read_bytes()


def _encrypt(key: pki.PrivateKey, passphrase: str) -> bytes:
    # PBKDF2-HMAC-SHA256 of CA_KEY_KDF_ROUNDS (600,000 by default), AES-256-CBC.
    return pki.encrypt_key_strongly(key, passphrase, rounds=settings.CA_KEY_KDF_ROUNDS)


def _write_key_file(path: Path, key: pki.PrivateKey, passphrase: str) -> None:
    """Write the key encrypted under passphrase, mode 0600, never overwriting a file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = _encrypt(key, passphrase)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _replace_key_file(path: Path, data: bytes) -> None:
    """Put data in place of an existing key file at once (a reader sees old or new, whole)."""
    temporary = path.with_name(f".{path.name}.rewrap")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_certificate(path: Path) -> x509.Certificate | None:
    try:
        return pki.load_pem(path.read_bytes())
    except (OSError, ValueError):
        return None


class EncryptedFileBackend(KeyBackend):
    """Keys in encrypted files; OPTIONS `directory` and `passphrase` default to the
    CA_KEY_DIR and CA_KEY_PASSPHRASE settings."""

    options = ("directory", "passphrase")

    def __init__(self, alias: str, *, directory: str | Path | None = None, passphrase=None):
        super().__init__(alias)
        self._directory = Path(directory) if directory is not None else None
        self._passphrase = passphrase
        self._keys: dict[str, pki.PrivateKey] = {}
        # path of a responder certificate -> (its file's stat, certificate, key)
        self._responders: dict[str, tuple[tuple, x509.Certificate, pki.PrivateKey]] = {}
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        """Where the key files live."""
        return self._directory if self._directory is not None else Path(settings.CA_KEY_DIR)

    @property
    def _secret(self) -> str:
        return self._passphrase if self._passphrase is not None else settings.CA_KEY_PASSPHRASE

    def key_path(self, ca: CertificateAuthority) -> Path:
        """The path of the CA's key file."""
        return self.directory / ca.key_filename

    # --- custody of a new CA's key ---------------------------------------------------

    def generate_key(self, key_type: str) -> NewKey:
        key = pki.generate_private_key(key_type)
        return NewKey(key.public_key(), key)

    def import_key(self, data: bytes | None, passphrase: str | None) -> NewKey:
        if not data:
            raise CAKeyError("give the CA's private key (--key) to import it into CA_KEY_DIR")
        key = pki.load_private_key(data, passphrase, what="the CA key")
        return NewKey(key.public_key(), key)

    def sign_with_new_key(
        self, key: NewKey, builder: x509.CertificateBuilder | x509.CertificateSigningRequestBuilder
    ) -> x509.Certificate | x509.CertificateSigningRequest:
        return pki.sign(builder, key._secret)

    def key_reference(self, cert: x509.Certificate, key: NewKey | None = None) -> str:
        return f"ca-{pki.serial_hex(cert.serial_number)[:24]}.key.pem"

    def pending_key_reference(self, public_key: pki.PublicKey, key: NewKey | None = None) -> str:
        return f"ca-{pki.public_key_sha256(public_key)[:24]}.key.pem"

    def store_key(self, ca: CertificateAuthority, key: NewKey) -> None:
        try:
            _write_key_file(self.key_path(ca), key._secret, self._secret)
        except FileExistsError:
            raise pki.CAError(
                f"a key file {ca.key_filename} already exists in CA_KEY_DIR"
            ) from None

    def key_location(self, ca: CertificateAuthority) -> str:
        return str(self.key_path(ca))

    # --- signing with a CA's key -------------------------------------------------------

    def check_usable(self, ca: CertificateAuthority) -> None:
        self._private_key(ca)

    def sign_certificate(self, ca, builder):
        return pki.sign(builder, self._private_key(ca))

    def sign_crl(self, ca, builder):
        return pki.sign(builder, self._private_key(ca))

    def _private_key(self, ca: CertificateAuthority) -> pki.PrivateKey:
        """The CA's key, read from disk on first use in this process, then kept."""
        key = self._keys.get(ca.key_filename)
        if key is not None:
            return key
        with self._lock:  # one reader per process: concurrent first signatures must not all decrypt
            key = self._keys.get(ca.key_filename)
            if key is None:
                key = self._open_key(ca)
                self._keys[ca.key_filename] = key
        return key

    def _open_key(self, ca: CertificateAuthority) -> pki.PrivateKey:
        try:
            data = _read_key_file(self.key_path(ca))
        except FileNotFoundError:
            raise CAKeyError(
                f"the key of CA '{ca.name}' is missing: no file {ca.key_filename} in CA_KEY_DIR"
            ) from None
        except PermissionError:
            raise CAKeyError(
                f"the key file of CA '{ca.name}' cannot be read (permissions)"
            ) from None
        except OSError as exc:
            raise CAKeyError(
                f"the key file of CA '{ca.name}' cannot be read: {exc.strerror or exc}"
            ) from None
        try:
            key = pki.load_private_key(data, self._secret, what=f"the key of CA '{ca.name}'")
        except pki.CAError as exc:
            raise CAKeyError(f"{exc} (check CA_KEY_PASSPHRASE)") from None
        if not pki.same_public_key(key, ca.certificate.public_key()):
            raise CAKeyError(f"the key file of CA '{ca.name}' does not match its certificate")
        logger.info("loaded the key of CA %s", ca.name)
        return key

    # --- keys at rest ------------------------------------------------------------------

    def rewrap_keys(self, new_passphrase: str | None = None) -> list[Rewrapped]:
        """Re-encrypt every key file of the directory with CA_KEY_KDF_ROUNDS (and under
        new_passphrase if given). Every file is opened before any is written, so a wrong
        passphrase changes nothing; a file already strong (under the target passphrase) is
        left as it is, so a second run does nothing."""
        rounds = settings.CA_KEY_KDF_ROUNDS
        target = new_passphrase or self._secret
        plan: list[tuple[Path, pki.KeyEncryption, pki.PrivateKey | None]] = []
        for path in sorted(self.directory.glob("*.key.pem")):
            data = _read_key_file(path)
            before = pki.key_encryption(data)
            key = None
            if not (before.strong(rounds) and self._opens(data, target)):
                key = self._open_for_rewrap(path, data, new_passphrase)
            plan.append((path, before, key))
        results = []
        for path, before, key in plan:
            if key is None:
                results.append(Rewrapped(self.alias, path.name, str(before), None))
                continue
            data = _encrypt(key, target)
            _replace_key_file(path, data)
            results.append(
                Rewrapped(self.alias, path.name, str(before), str(pki.key_encryption(data)))
            )
        with self._lock:  # keys read under the old passphrase must not outlive the change
            self._keys.clear()
            self._responders.clear()
        return results

    def _opens(self, data: bytes, passphrase: str) -> bool:
        # Opened even when the KDF is already strong: a wrong passphrase must not pass.
        try:
            pki.load_private_key(data, passphrase)
        except pki.CAError:
            return False
        return True

    def _open_for_rewrap(
        self, path: Path, data: bytes, new_passphrase: str | None
    ) -> pki.PrivateKey:
        for passphrase in filter(None, (self._secret, new_passphrase)):
            try:
                return pki.load_private_key(data, passphrase, what=f"the key file {path.name}")
            except pki.CAError:
                continue
        raise CAKeyError(
            f"the key file {path.name} does not open with CA_KEY_PASSPHRASE"
            + (" or the new passphrase" if new_passphrase else "")
            + "; nothing was rewrapped"
        )

    # --- OCSP: the delegated responder, or the CA itself -----------------------------

    def responder_cert_path(self, ca: CertificateAuthority) -> Path:
        """Where the CA's delegated responder certificate lives."""
        return self.directory / f"ocsp-{ca.pk}.cert.pem"

    def responder_key_filename(self, ca: CertificateAuthority, cert: x509.Certificate) -> str:
        """The key file of one responder certificate (a new responder never overwrites a key)."""
        return f"ocsp-{ca.pk}-{pki.serial_hex(cert.serial_number)[:24]}.key.pem"

    def store_ocsp_responder(
        self, ca: CertificateAuthority, key: NewKey, cert: x509.Certificate
    ) -> None:
        """Write the key, then swap the certificate in; the previous responder's key goes."""
        cert_path = self.responder_cert_path(ca)
        previous = _read_certificate(cert_path)
        key_filename = self.responder_key_filename(ca, cert)
        _write_key_file(self.directory / key_filename, key._secret, self._secret)
        temporary = cert_path.with_suffix(".tmp")
        temporary.write_text(pki.to_pem(cert))
        os.replace(temporary, cert_path)  # atomic: a reader sees the old or the new, whole
        if previous is not None:
            previous_key = self.directory / self.responder_key_filename(ca, previous)
            if previous_key.name != key_filename:
                previous_key.unlink(missing_ok=True)

    def sign_ocsp_response(self, ca: CertificateAuthority, builder) -> bytes:
        delegated = self._delegated_responder(ca)
        if delegated is not None:
            responder_cert, responder_key = delegated
        else:
            responder_cert, responder_key = ca.certificate, self._private_key(ca)
        builder = pki.with_responder(builder, responder_cert, delegated=delegated is not None)
        return pki.response_der(pki.sign(builder, responder_key))

    def _delegated_responder(
        self, ca: CertificateAuthority
    ) -> tuple[x509.Certificate, pki.PrivateKey] | None:
        """The CA's responder certificate and key, if there is one valid now; read once per
        change of the file (a stat per answer notices a new responder in running processes)."""
        path = self.responder_cert_path(ca)
        try:
            stat = path.stat()
        except OSError:
            return None
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._responders.get(str(path))
        if cached is None or cached[0] != signature:
            with self._lock:
                loaded = self._load_responder(ca, path)
                if loaded is None:
                    return None
                cached = (signature, *loaded)
                self._responders[str(path)] = cached
        _, cert, key = cached
        now = pki.utcnow()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            logger.warning("the OCSP responder of CA %s has expired; signing with the CA key", ca)
            return None
        return cert, key

    def _load_responder(
        self, ca: CertificateAuthority, path: Path
    ) -> tuple[x509.Certificate, pki.PrivateKey] | None:
        cert = _read_certificate(path)
        if cert is None:
            logger.error("cannot read %s; signing OCSP answers with the CA key", path)
            return None
        try:
            data = (self.directory / self.responder_key_filename(ca, cert)).read_bytes()
            key = pki.load_private_key(data, self._secret, what="the OCSP key")
        except (OSError, pki.CAError) as exc:
            logger.error(
                "cannot open the OCSP responder key of CA %s (%s); using the CA key", ca, exc
            )
            return None
        if not pki.same_public_key(key, cert.public_key()) or not pki.verify_signed_by(
            cert, ca.certificate
        ):
            logger.error("the OCSP responder files of CA %s do not match; using the CA key", ca)
            return None
        return cert, key
