"""OCSP (RFC 6960): read requests, match issuers, and build responses for a signer."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.ocsp import OCSPResponseStatus

from . import der
from .errors import OCSPRequestError
from .keys import public_key_der
from .revocation import RevokedEntry, reason_flag

__all__ = ["OCSPResponseStatus"]  # re-exported: callers name statuses without cryptography

MAX_OCSP_REQUEST_BYTES = 16 * 1024  # one CertID and a nonce fit in a few hundred bytes
_CERT_STATUS = {
    "good": x509_ocsp.OCSPCertStatus.GOOD,
    "revoked": x509_ocsp.OCSPCertStatus.REVOKED,
    "unknown": x509_ocsp.OCSPCertStatus.UNKNOWN,
}


def parse_ocsp_request(data: bytes) -> x509_ocsp.OCSPRequest:
    """A DER OCSP request with one CertID, or OCSPRequestError."""
    if not data:
        raise OCSPRequestError("the OCSP request is empty")
    if len(data) > MAX_OCSP_REQUEST_BYTES:
        raise OCSPRequestError("the OCSP request is too large")
    try:
        request = x509_ocsp.load_der_ocsp_request(data)
        request.hash_algorithm  # noqa: B018 - an unknown hash algorithm is refused here
    except (ValueError, UnsupportedAlgorithm, NotImplementedError) as exc:
        raise OCSPRequestError(f"cannot read the OCSP request: {exc}") from None
    return request


def decode_ocsp_get(text: str) -> bytes:
    """The DER request from the path of a GET request (RFC 6960 A.1: base64, URL-encoded)."""
    cleaned = "".join(text.split())
    # Some clients send the URL-safe alphabet, or drop the padding.
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise OCSPRequestError("the OCSP GET request is not base64") from None


def issuer_hashes(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA certificate under the request's algorithm."""

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(type(algorithm)())
        h.update(data)
        return h.finalize()

    key_bits = der.subject_public_key_bits(public_key_der(cert.public_key()))
    return digest(cert.subject.public_bytes()), digest(key_bits)


def response_builder(
    request: x509_ocsp.OCSPRequest,
    *,
    status: str,
    revoked: RevokedEntry | None,
    now: dt.datetime,
) -> x509_ocsp.OCSPResponseBuilder:
    """The answer for the request's CertID: "good", "revoked" or "unknown", before a
    responder is named (with_responder) and it is signed.

    No nextUpdate: the status is read live, so newer information is always available
    (RFC 6960 2.4). The nonce is echoed when the request has one.
    """
    builder = x509_ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number,
        algorithm=request.hash_algorithm,
        cert_status=_CERT_STATUS[status],
        this_update=now,
        next_update=None,
        revocation_time=revoked.revoked_at if revoked else None,
        revocation_reason=reason_flag(revoked.reason) if revoked else None,
    )
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
    except x509.ExtensionNotFound:
        pass
    else:
        builder = builder.add_extension(nonce, critical=False)
    return builder


def with_responder(
    builder: x509_ocsp.OCSPResponseBuilder, responder_cert: x509.Certificate, *, delegated: bool
) -> x509_ocsp.OCSPResponseBuilder:
    """The answer named as signed by responder_cert's key (the CA's, or its delegate's).

    The CA itself is named byName: GnuTLS finds the signer among its trust anchors only by
    name, and answers "Signer cert not found" for a byKey ID without certificates (OpenSSL
    and NSS accept both). A delegate is named byKey and its certificate is included, since
    the client needs it to check that the CA delegated to it (RFC 6960 4.2.2.2)."""
    if not delegated:
        return builder.responder_id(x509_ocsp.OCSPResponderEncoding.NAME, responder_cert)
    builder = builder.responder_id(x509_ocsp.OCSPResponderEncoding.HASH, responder_cert)
    return builder.certificates([responder_cert])


def response_der(response: x509_ocsp.OCSPResponse) -> bytes:
    """A signed OCSP response as DER."""
    return response.public_bytes(serialization.Encoding.DER)


def unsuccessful_response(status: OCSPResponseStatus) -> bytes:
    """An unsigned response without an answer: malformedRequest, internalError, unauthorized."""
    return response_der(x509_ocsp.OCSPResponseBuilder.build_unsuccessful(status))
