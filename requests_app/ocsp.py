"""The OCSP responder: each answer read live from the certificates table and signed by the
CA's key, or by its delegated responder when `manage.py create_ocsp_responder` made one.

A delegated responder is two files in CA_KEY_DIR: `ocsp-<ca id>.cert.pem` (its certificate)
and its key, encrypted like the CA key, named after the certificate's serial number.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.x509 import ocsp
from django.conf import settings

from . import ca as ca_store
from . import pki, revocation
from .models import Certificate, CertificateAuthority

logger = logging.getLogger(__name__)

_responders: dict[str, tuple[tuple, x509.Certificate, pki.PrivateKey]] = {}
_issuer_hashes: dict[tuple[int, str, str], tuple[bytes, bytes]] = {}
_lock = threading.Lock()


# --- the delegated responder's files ------------------------------------------------


def responder_cert_path(ca: CertificateAuthority) -> Path:
    """Where the CA's delegated responder certificate lives."""
    return ca_store.key_dir() / f"ocsp-{ca.pk}.cert.pem"


def responder_key_filename(ca: CertificateAuthority, cert: x509.Certificate) -> str:
    """The key file of one responder certificate (a new responder never overwrites a key)."""
    return f"ocsp-{ca.pk}-{pki.serial_hex(cert.serial_number)[:24]}.key.pem"


def store_responder(ca: CertificateAuthority, key: pki.PrivateKey, cert: x509.Certificate) -> Path:
    """Write the key, then swap the certificate in; the previous responder's key is removed."""
    cert_path = responder_cert_path(ca)
    previous = _read_responder_cert(cert_path)
    ca_store.write_key_file(responder_key_filename(ca, cert), key)
    temporary = cert_path.with_suffix(".tmp")
    temporary.write_text(pki.to_pem(cert))
    os.replace(temporary, cert_path)  # atomic: a reader sees the old or the new, whole
    if previous is not None:
        responder_key_path = ca_store.key_dir() / responder_key_filename(ca, previous)
        if responder_key_path.name != responder_key_filename(ca, cert):
            responder_key_path.unlink(missing_ok=True)
    return cert_path


def _read_responder_cert(path: Path) -> x509.Certificate | None:
    try:
        return pki.load_pem(path.read_bytes())
    except (OSError, ValueError):
        return None


def delegated_responder(
    ca: CertificateAuthority,
) -> tuple[x509.Certificate, pki.PrivateKey] | None:
    """The CA's responder certificate and key, if there is one valid now; read once per
    change of the file (a stat per answer notices a new responder in running processes)."""
    path = responder_cert_path(ca)
    try:
        stat = path.stat()
    except OSError:
        return None
    signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    cached = _responders.get(str(path))
    if cached is None or cached[0] != signature:
        with _lock:
            loaded = _load_responder(ca, path)
            if loaded is None:
                return None
            cached = (signature, *loaded)
            _responders[str(path)] = cached
    _, cert, key = cached
    now = pki.utcnow()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        logger.warning("the OCSP responder of CA %s has expired; signing with the CA key", ca)
        return None
    return cert, key


def _load_responder(
    ca: CertificateAuthority, path: Path
) -> tuple[x509.Certificate, pki.PrivateKey] | None:
    cert = _read_responder_cert(path)
    if cert is None:
        logger.error("cannot read %s; signing OCSP answers with the CA key", path)
        return None
    try:
        data = (ca_store.key_dir() / responder_key_filename(ca, cert)).read_bytes()
        key = pki.load_private_key(data, settings.CA_KEY_PASSPHRASE, what="the OCSP key")
    except (OSError, pki.CAError) as exc:
        logger.error("cannot open the OCSP responder key of CA %s (%s); using the CA key", ca, exc)
        return None
    if not pki.same_public_key(key, cert.public_key()) or not pki.verify_signed_by(
        cert, ca.certificate
    ):
        logger.error("the OCSP responder files of CA %s do not match; using the CA key", ca)
        return None
    return cert, key


def forget_responders() -> None:
    """Drop cached responders (tests)."""
    with _lock:
        _responders.clear()


# --- answering ----------------------------------------------------------------------


def _hashes(ca: CertificateAuthority, algorithm) -> tuple[bytes, bytes]:
    cache_key = (ca.pk, ca.serial, algorithm.name)
    found = _issuer_hashes.get(cache_key)
    if found is None:
        found = revocation.issuer_hashes(ca.certificate, algorithm)
        _issuer_hashes[cache_key] = found
    return found


def _issuer_of(request: ocsp.OCSPRequest) -> CertificateAuthority | None:
    wanted = (request.issuer_name_hash, request.issuer_key_hash)
    for ca in CertificateAuthority.objects.order_by("-is_default", "pk"):
        if _hashes(ca, request.hash_algorithm) == wanted:
            return ca
    return None


def _status(
    ca: CertificateAuthority | None, serial: int
) -> tuple[str, revocation.RevokedEntry | None]:
    if ca is None:  # RFC 6960 2.2: "unknown" also answers for an issuer we do not serve
        return "unknown", None
    row = (
        Certificate.objects.filter(ca=ca, serial=pki.serial_hex(serial))
        .values_list("status", "revoked_at", "revocation_reason")
        .first()
    )
    if row is None:
        return "unknown", None
    status, revoked_at, reason = row
    if status != Certificate.Status.REVOKED:
        return "good", None
    entry = revocation.RevokedEntry(serial, revoked_at, reason or "unspecified")
    return "revoked", entry


def respond(data: bytes) -> bytes:
    """The DER OCSP response to a DER OCSP request; never raises for bad input."""
    try:
        request = revocation.parse_ocsp_request(data)
    except revocation.OCSPRequestError:
        return revocation.unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    issuer = _issuer_of(request)
    status, revoked = _status(issuer, request.serial_number)
    signer_ca = issuer or CertificateAuthority.objects.filter(is_default=True).first()
    if signer_ca is None:
        return revocation.unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    try:
        delegated = delegated_responder(signer_ca)
        if delegated is not None:
            responder_cert, responder_key = delegated
        else:
            responder_cert, responder_key = signer_ca.certificate, ca_store.load_key(signer_ca)
    except pki.CAError:
        logger.exception("cannot sign OCSP answers for CA %s", signer_ca)
        return revocation.unsuccessful_response(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
    return revocation.build_ocsp_response(
        request,
        status=status,
        revoked=revoked,
        responder_cert=responder_cert,
        responder_key=responder_key,
        delegated=delegated is not None,
        now=pki.utcnow(),
    )
