"""Revocation engine: pure `cryptography` code, no Django.

Build and sign CRLs (RFC 5280), read OCSP requests and build OCSP responses (RFC 6960),
and make the certificate of a delegated OCSP responder.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import pki

#: RFC 5280 reason names, in the order people are offered them ("removeFromCRL" is not a
#: reason to revoke: it is what releasing a hold is called in CRLs and signals).
REASONS = tuple(
    flag.value for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
)
HOLD = x509.ReasonFlags.certificate_hold.value
REMOVE_FROM_CRL = x509.ReasonFlags.remove_from_crl.value
REASON_LABELS = {
    "unspecified": "Unspecified",
    "keyCompromise": "Key compromise",
    "cACompromise": "CA compromise",
    "affiliationChanged": "Affiliation changed",
    "superseded": "Superseded",
    "cessationOfOperation": "Cessation of operation",
    "certificateHold": "Certificate hold (can be released)",
    "privilegeWithdrawn": "Privilege withdrawn",
    "aACompromise": "AA compromise",
    "removeFromCRL": "Hold released",
}
MAX_OCSP_REQUEST_BYTES = 16 * 1024  # one CertID and a nonce fit in a few hundred bytes


class OCSPRequestError(ValueError):
    """The OCSP request cannot be read: the answer is the malformedRequest status."""


def parse_reason(text: str) -> str | None:
    """A reason name as typed by a person (any case, "key_compromise") in RFC 5280 form."""
    wanted = str(text).replace("_", "").replace("-", "").lower()
    for name in REASONS:
        if name.lower() == wanted:
            return name
    return None


def reason_flag(name: str) -> x509.ReasonFlags | None:
    """The ReasonFlags for a reason name; None for "unspecified", which RFC 5280 (5.3.1)
    says to express by leaving the reason code out."""
    if not name or name == x509.ReasonFlags.unspecified.value:
        return None
    return x509.ReasonFlags(name)


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate as a CRL or an OCSP response names it."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"
    invalidity_date: dt.datetime | None = None


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --- CRLs ---------------------------------------------------------------------------


def build_crl(
    *,
    ca_cert: x509.Certificate,
    ca_key: pki.PrivateKey,
    entries: list[RevokedEntry],
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    """A full CRL signed by the CA, with CRL number, AKI, reason codes and invalidity dates."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        flag = reason_flag(entry.reason)
        if flag is not None:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        if entry.invalidity_date is not None:
            revoked = revoked.add_extension(
                x509.InvalidityDate(entry.invalidity_date.astimezone(dt.UTC)),
                critical=False,
            )
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(private_key=ca_key, algorithm=pki.signature_hash(ca_key))


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as DER."""
    return crl.public_bytes(serialization.Encoding.DER)


def crl_der_to_pem(der: bytes) -> bytes:
    """DER CRL bytes as a PEM "X509 CRL" block."""
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)


# --- OCSP ---------------------------------------------------------------------------


def parse_ocsp_request(data: bytes) -> ocsp.OCSPRequest:
    """A DER OCSP request with one CertID, or OCSPRequestError."""
    if not data:
        raise OCSPRequestError("the OCSP request is empty")
    if len(data) > MAX_OCSP_REQUEST_BYTES:
        raise OCSPRequestError("the OCSP request is too large")
    try:
        request = ocsp.load_der_ocsp_request(data)
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


def _subject_public_key_bits(cert: x509.Certificate) -> bytes:
    """The contents of the subjectPublicKey BIT STRING (what RFC 6960 hashes as issuerKeyHash)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def read(data: bytes, pos: int) -> tuple[int, int, int]:
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        return tag, pos, length

    _, pos, _ = read(spki, 0)  # SubjectPublicKeyInfo SEQUENCE
    _, pos, length = read(spki, pos)  # AlgorithmIdentifier SEQUENCE
    _, pos, length = read(spki, pos + length)  # subjectPublicKey BIT STRING
    return spki[pos + 1 : pos + length]  # without the unused-bits byte


def issuer_hashes(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA certificate under the request's algorithm."""

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(type(algorithm)())
        h.update(data)
        return h.finalize()

    return digest(cert.subject.public_bytes()), digest(_subject_public_key_bits(cert))


def build_ocsp_response(
    request: ocsp.OCSPRequest,
    *,
    status: str,
    revoked: RevokedEntry | None,
    responder_cert: x509.Certificate,
    responder_key: pki.PrivateKey,
    delegated: bool,
    now: dt.datetime,
) -> bytes:
    """A signed, successful response for the request's CertID: "good", "revoked" or "unknown".

    No nextUpdate: the status is read live, so newer information is always available
    (RFC 6960 2.4). The nonce is echoed when the request has one.
    """
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[status]
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number,
        algorithm=request.hash_algorithm,
        cert_status=cert_status,
        this_update=now,
        next_update=None,
        revocation_time=revoked.revoked_at if revoked else None,
        revocation_reason=reason_flag(revoked.reason) if revoked else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder_cert)
    if delegated:
        # The client needs the responder's certificate to check that the CA delegated to it.
        builder = builder.certificates([responder_cert])
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
    except x509.ExtensionNotFound:
        pass
    else:
        builder = builder.add_extension(nonce, critical=False)
    response = builder.sign(responder_key, pki.signature_hash(responder_key))
    return response.public_bytes(serialization.Encoding.DER)


def unsuccessful_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned response without an answer: malformedRequest, internalError, unauthorized."""
    response = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return response.public_bytes(serialization.Encoding.DER)


def create_ocsp_responder(
    *,
    ca_cert: x509.Certificate,
    ca_key: pki.PrivateKey,
    validity_days: int,
    now: dt.datetime | None = None,
) -> tuple[pki.PrivateKey, x509.Certificate]:
    """A key and certificate for a delegated OCSP responder of this CA (RFC 6960 4.2.2.2):
    id-kp-OCSPSigning, and id-pkix-ocsp-nocheck so that clients do not ask about it."""
    now = now or pki.utcnow()
    not_after = min(now + dt.timedelta(days=validity_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise pki.CAError("the CA certificate has expired; it cannot delegate OCSP")
    key = pki.generate_private_key(pki.key_type_of(ca_key))
    cn = x509.NameAttribute(
        NameOID.COMMON_NAME, f"{pki.common_name(ca_cert.subject) or 'CA'} OCSP Responder"[:64]
    )
    # The CA's name with its CN replaced, in the CA's order.
    others = [a for a in ca_cert.subject if a.oid != NameOID.COMMON_NAME]
    subject = x509.Name([*others, cn])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - dt.timedelta(minutes=1), ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(pki.key_usage_for(key.public_key(), encipherment=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    return key, builder.sign(private_key=ca_key, algorithm=pki.signature_hash(ca_key))
