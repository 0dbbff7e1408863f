"""Certificates and stored CSRs described for people: the strings pages and the admin show."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from .clock import utcnow
from .csr import load_csr
from .errors import PKIError
from .formats import fingerprint, sha1_fingerprint
from .issuance import EKU_OIDS
from .keys import key_description
from .names import san_to_text, serial_colons, serial_hex

_EKU_NAMES = {oid: name for name, oid in EKU_OIDS.items()}
_KEY_USAGES = (
    ("digital_signature", "Digital signature"),
    ("content_commitment", "Non-repudiation"),
    ("key_encipherment", "Key encipherment"),
    ("data_encipherment", "Data encipherment"),
    ("key_agreement", "Key agreement"),
    ("key_cert_sign", "Certificate signing"),
    ("crl_sign", "CRL signing"),
)


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    issuer: str
    serial: str
    serial_colons: str
    not_before: dt.datetime
    not_after: dt.datetime
    key: str
    sans: list[str]
    extended_key_usages: list[str]
    key_usages: list[str]
    is_ca: bool
    sha256: str
    sha1: str

    @property
    def expired(self) -> bool:
        return self.not_after < utcnow()


def _extension(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def describe_certificate(cert: x509.Certificate) -> CertificateSummary:
    """What a person wants to read about a certificate, as strings."""
    algorithm, size = key_description(cert.public_key())
    sans = _extension(cert, x509.SubjectAlternativeName)
    ekus = _extension(cert, x509.ExtendedKeyUsage)
    usage = _extension(cert, x509.KeyUsage)
    constraints = _extension(cert, x509.BasicConstraints)
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=serial_hex(cert.serial_number),
        serial_colons=serial_colons(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key=f"{algorithm} ({size} bits)" if algorithm != "Ed25519" else algorithm,
        sans=[san_to_text(name) for name in sans] if sans else [],
        extended_key_usages=[
            _EKU_NAMES.get(oid, getattr(oid, "_name", None) or oid.dotted_string)
            for oid in (ekus or [])
        ],
        key_usages=[label for attr, label in _KEY_USAGES if usage and getattr(usage, attr)],
        is_ca=bool(constraints and constraints.ca),
        sha256=fingerprint(cert),
        sha1=sha1_fingerprint(cert),
    )


def describe_csr_key(csr: str | bytes) -> tuple[str, int] | None:
    """Algorithm and size of a stored CSR's key; None when the CSR cannot be read."""
    try:
        return key_description(load_csr(csr).public_key())
    except (PKIError, ValueError, UnsupportedAlgorithm):
        return None


def csr_alt_names(csr: str | bytes) -> list[str] | None:
    """A stored CSR's subjectAltName as text ([] without one); None when it cannot be read."""
    try:
        ext = load_csr(csr).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except (PKIError, ValueError):
        return None
    return [san_to_text(name) for name in ext.value]
