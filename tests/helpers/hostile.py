"""Hostile and unusual CSRs, as issue 12 lists them: each made the way an attacker or an odd
tool would make it (cryptography without its safety checks, or `openssl req`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from requests_app import pki
from tests.helpers.csrs import der_of


def raw_csr(
    attributes: list[tuple[ObjectIdentifier, str]],
    *,
    dns: list[str] = (),
    key=None,
    extension_bytes: int = 0,
    utf8_only: bool = False,
) -> str:
    """A PEM CSR with the attributes and dNSNames exactly as given (no length, IDNA or
    ASCII checks), signed with SHA-256; utf8_only writes every attribute as UTF8String
    (a country too), so that any text can be encoded."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    kind = _ASN1Type.UTF8String if utf8_only else None
    name = x509.Name(
        [
            x509.NameAttribute(oid, value, kind, _validate=False)
            if kind
            else x509.NameAttribute(oid, value, _validate=False)
            for oid, value in attributes
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if dns:
        names = [x509.DNSName._init_without_validation(value) for value in dns]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if extension_bytes:
        filler = x509.UnrecognizedExtension(
            ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x00" * extension_bytes
        )
        builder = builder.add_extension(filler, critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def cn_csr(cn: str, **kwargs) -> str:
    return raw_csr([(NameOID.COMMON_NAME, cn)], **kwargs)


def openssl_csr(directory: Path, *args: str, subject: str = "/CN=weak.example.test") -> bytes:
    """`openssl req -new` with extra arguments (a digest, a key); returns the PEM."""
    out = directory / "odd.csr"
    subprocess.run(
        ["openssl", "req", "-new", *args, "-subj", subject, "-out", str(out)],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def weak_hash_csr(directory: Path, digest: str) -> bytes:
    """An RSA CSR signed with -sha1 or -md5 by openssl."""
    key = directory / "rsa.key"
    if not key.exists():
        subprocess.run(
            [
                "openssl",
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                str(key),
            ],
            check=True,
            capture_output=True,
        )
    return openssl_csr(directory, "-key", str(key), f"-{digest}")


def explicit_curve_csr(directory: Path, *, custom: bool = False) -> bytes:
    """A CSR whose EC key carries explicit curve parameters (P-256's, or with custom=True a
    changed coefficient, so that no named curve matches)."""
    key = directory / "explicit.key"
    subprocess.run(
        [
            "openssl",
            "ecparam",
            "-name",
            "prime256v1",
            "-param_enc",
            "explicit",
            "-genkey",
            "-noout",
            "-out",
            str(key),
        ],
        check=True,
        capture_output=True,
    )
    pem = openssl_csr(directory, "-key", str(key), "-sha256")
    if not custom:
        return pem
    der = bytearray(der_of(pem.decode()))
    # P-256's coefficient b begins 5a c6 35 d8: change it, the curve is no longer P-256.
    at = bytes(der).index(bytes.fromhex("5ac635d8"))
    der[at] ^= 0x01
    return bytes(der)


def dsa_csr() -> str:
    key = dsa.generate_private_key(2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsa.example.test")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def big_der_csr() -> bytes:
    """A DER CSR just under 64 KiB, whose PEM form (what is stored) is over 64 KiB."""
    der = der_of(cn_csr("big.example.test", extension_bytes=60 * 1024))
    assert (
        len(der)
        < pki.MAX_CSR_BYTES
        < len(pki.load_csr(der).public_bytes(serialization.Encoding.PEM))
    )
    return der
