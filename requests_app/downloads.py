"""The download formats of certificates and CAs (file name, content type, bytes), shared by
views, commands and delivery."""

from __future__ import annotations

from dataclasses import dataclass

from . import pki
from .models import Certificate, CertificateAuthority


@dataclass(frozen=True)
class Encoded:
    data: bytes
    content_type: str
    filename: str


class UnknownFormat(ValueError):
    pass


CERTIFICATE_FORMATS = ("pem", "der", "p7b", "chain")
CA_FORMATS = ("pem", "der", "p7b")


def encode_certificate(cert: Certificate, fmt: str) -> Encoded:
    """pem: the certificate; der: .cer; p7b: certificate and chain; chain: full-chain PEM."""
    if fmt == "pem":  # stored exactly as issued: no need to parse it
        return Encoded(cert.pem.encode(), "application/x-pem-file", f"{cert.serial_filename}.pem")
    if fmt == "der":
        return Encoded(
            pki.to_der(cert.x509), "application/pkix-cert", f"{cert.serial_filename}.cer"
        )
    if fmt == "p7b":
        return Encoded(
            pki.to_pkcs7(cert.chain), "application/pkcs7-mime", f"{cert.serial_filename}.p7b"
        )
    if fmt == "chain":
        return Encoded(
            pki.to_fullchain_pem(cert.chain).encode(),
            "application/x-pem-file",
            f"{cert.serial_filename}-fullchain.pem",
        )
    raise UnknownFormat(f"unknown format {fmt!r}; use one of {', '.join(CERTIFICATE_FORMATS)}")


def encode_ca(ca: CertificateAuthority, fmt: str) -> Encoded:
    """pem: the CA certificate and its chain; der: the CA certificate; p7b: all of them."""
    certs = [ca.certificate, *ca.chain]
    stem = f"ca-{ca.pk}"
    if fmt == "pem":
        return Encoded(
            pki.to_fullchain_pem(certs).encode(), "application/x-pem-file", f"{stem}.pem"
        )
    if fmt == "der":
        return Encoded(pki.to_der(ca.certificate), "application/pkix-cert", f"{stem}.cer")
    if fmt == "p7b":
        return Encoded(pki.to_pkcs7(certs), "application/pkcs7-mime", f"{stem}.p7b")
    raise UnknownFormat(f"unknown format {fmt!r}; use one of {', '.join(CA_FORMATS)}")
