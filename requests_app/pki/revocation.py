"""Revocation: the RFC 5280 reason names, and certificate revocation lists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .authority import authority_key_identifier

#: RFC 5280 reason names, in the order people are offered them ("removeFromCRL" is not a
#: reason to revoke: it is what releasing a hold is called in CRLs and signals). Every one is
#: final but certificateHold.
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


def crl_builder(
    *,
    ca_cert: x509.Certificate,
    entries: list[RevokedEntry],
    number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationListBuilder:
    """The unsigned full CRL of a CA, with CRL number, AKI, reason codes and invalidity dates."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(authority_key_identifier(ca_cert), critical=False)
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
    return builder


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as DER."""
    return crl.public_bytes(serialization.Encoding.DER)


def crl_der_to_pem(der: bytes) -> bytes:
    """DER CRL bytes as a PEM "X509 CRL" block."""
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
