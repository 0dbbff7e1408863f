"""The encodings that clients import: PEM, DER, PKCS#7, full-chain PEM and PKCS#12."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from .keys import PrivateKey

PKCS12_FORMATS = ("modern", "compatible")

#: The type of a parsed certificate, for callers' type hints.
X509Certificate = x509.Certificate


def to_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def to_der(cert: x509.Certificate) -> bytes:
    """The certificate as DER bytes."""
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Encoded:
    """A certificate's stored encodings, made from its DER once (issuance's hot path)."""

    der: bytes
    pem: str
    sha256_hex: str


def encoded(cert: x509.Certificate) -> Encoded:
    """The DER, PEM and SHA-256 fingerprint of cert, from one serialisation: the PEM is
    the DER in base64 lines of 64 (what public_bytes(PEM) writes), the fingerprint its hash."""
    der = cert.public_bytes(serialization.Encoding.DER)
    text = base64.b64encode(der).decode()
    lines = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    pem = f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"
    return Encoded(der=der, pem=pem, sha256_hex=hashlib.sha256(der).hexdigest())


def load_pem(pem: str | bytes) -> x509.Certificate:
    """One PEM certificate."""
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def to_pkcs7(certs: list[x509.Certificate], *, der: bool = True) -> bytes:
    """A degenerate signed-data (certificates only) holding the certificates."""
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return pkcs7.serialize_certificates(certs, encoding)


def to_fullchain_pem(certs: list[x509.Certificate]) -> str:
    """The certificate first, then its issuers: what nginx and most servers want."""
    return "".join(to_pem(cert) for cert in certs)


def to_pkcs12(
    key: PrivateKey,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    passphrase: str,
    *,
    name: str,
    fmt: str = "modern",
) -> bytes:
    """PKCS#12 with key, certificate and chain under the passphrase: "modern" is AES-256 with
    a SHA-256 MAC, "compatible" the old algorithms (3DES, SHA-1 MAC) every importer knows."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder()
    if fmt == "modern":
        builder = (
            builder.kdf_rounds(50000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    elif fmt == "compatible":
        # macOS Keychain (at least through Ventura) and Windows before 10 (1709) answer
        # "wrong password" to the AES-256 format; 2048 rounds are OpenSSL's -legacy default.
        builder = (
            builder.kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC the old importers check
        )
    else:
        raise ValueError(f"unknown PKCS#12 format {fmt!r}; use one of {', '.join(PKCS12_FORMATS)}")
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, chain or None, builder.build(passphrase.encode())
    )


def fingerprint(cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> str:
    """Colon-separated upper-case hex fingerprint (SHA-256 by default)."""
    return cert.fingerprint(algorithm or hashes.SHA256()).hex(":").upper()


def sha256_hex(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint as lower-case hex without colons, as certificates are stored."""
    return cert.fingerprint(hashes.SHA256()).hex()


def sha1_fingerprint(cert: x509.Certificate) -> str:
    """The SHA-1 fingerprint, colon-separated: shown to people who compare it, never trusted."""
    return fingerprint(cert, hashes.SHA1())  # noqa: S303
