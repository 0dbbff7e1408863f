"""The OCSP responder: each answer read live from the certificates table, and signed by the
CA's key backend (with its delegated responder when `manage.py create_ocsp_responder` made
one, otherwise with the CA key)."""

from __future__ import annotations

import logging

from .. import keys, pki
from ..models import Certificate, CertificateAuthority

logger = logging.getLogger(__name__)

_issuer_hashes: dict[tuple[int, str, str], tuple[bytes, bytes]] = {}


def _hashes(ca: CertificateAuthority, algorithm) -> tuple[bytes, bytes]:
    cache_key = (ca.pk, ca.serial, algorithm.name)
    found = _issuer_hashes.get(cache_key)
    if found is None:
        found = pki.issuer_hashes(ca.certificate, algorithm)
        _issuer_hashes[cache_key] = found
    return found


def _issuer_of(request) -> CertificateAuthority | None:
    wanted = (request.issuer_name_hash, request.issuer_key_hash)
    for ca in CertificateAuthority.objects.order_by("-is_default", "pk"):
        if _hashes(ca, request.hash_algorithm) == wanted:
            return ca
    return None


def _status(ca: CertificateAuthority | None, serial: int) -> tuple[str, pki.RevokedEntry | None]:
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
    return "revoked", pki.RevokedEntry(serial, revoked_at, reason or "unspecified")


def respond(data: bytes) -> bytes:
    """The DER OCSP response to a DER OCSP request; never raises for bad input."""
    try:
        request = pki.parse_ocsp_request(data)
    except pki.OCSPRequestError:
        return pki.unsuccessful_response(pki.OCSPResponseStatus.MALFORMED_REQUEST)
    issuer = _issuer_of(request)
    status, revoked = _status(issuer, request.serial_number)
    signer_ca = issuer or CertificateAuthority.objects.filter(is_default=True).first()
    if signer_ca is None:
        return pki.unsuccessful_response(pki.OCSPResponseStatus.UNAUTHORIZED)
    answer = pki.response_builder(request, status=status, revoked=revoked, now=pki.utcnow())
    try:
        return keys.backend_for(signer_ca).sign_ocsp_response(signer_ca, answer)
    except pki.CAError:
        logger.exception("cannot sign OCSP answers for CA %s", signer_ca)
        return pki.unsuccessful_response(pki.OCSPResponseStatus.INTERNAL_ERROR)
