"""What end-entity and agent views share: lookups, the not-found page, certificate summaries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import pki
from ..models import Certificate, CertificateRequest


def find_request(public_id: str) -> CertificateRequest | None:
    """The request with that ID, typed in any case, with or without hyphens."""
    return CertificateRequest.objects.select_related("certificate", "acted_by").by_public_id(
        public_id
    )


def find_certificate(serial: str) -> Certificate | None:
    """The certificate with that serial (Certificate.objects.by_serial's rule)."""
    # One query for the certificate, its CA and its request (the page needs all three).
    return (
        Certificate.objects.select_related("ca", "request")
        .defer("request__csr_pem")
        .by_serial(serial)
    )


def not_found(request: HttpRequest, title: str, message: str) -> HttpResponse:
    """A 404 page that says what was not found and nothing else."""
    return render(request, "ee/not_found.html", {"title": title, "message": message}, status=404)


# --- a readable certificate ---------------------------------------------------------

_EKU_NAMES = {oid: name for name, oid in pki.EKU_OIDS.items()}
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
        return self.not_after < pki.utcnow()


def _extension(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def describe_certificate(cert: x509.Certificate) -> CertificateSummary:
    """What a person wants to read about a certificate, as strings."""
    algorithm, size = pki.key_description(cert.public_key())
    sans = _extension(cert, x509.SubjectAlternativeName)
    ekus = _extension(cert, x509.ExtendedKeyUsage)
    usage = _extension(cert, x509.KeyUsage)
    constraints = _extension(cert, x509.BasicConstraints)
    serial = pki.serial_hex(cert.serial_number)
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=serial,
        serial_colons=":".join(padded[i : i + 2] for i in range(0, len(padded), 2)).upper(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key=f"{algorithm} ({size} bits)" if algorithm != "Ed25519" else algorithm,
        sans=[pki.san_to_text(name) for name in sans] if sans else [],
        extended_key_usages=[
            _EKU_NAMES.get(oid, getattr(oid, "_name", None) or oid.dotted_string)
            for oid in (ekus or [])
        ],
        key_usages=[label for attr, label in _KEY_USAGES if usage and getattr(usage, attr)],
        is_ca=bool(constraints and constraints.ca),
        sha256=pki.fingerprint(cert),
        sha1=pki.fingerprint(cert, hashes.SHA1()),  # noqa: S303 - shown, never trusted
    )
