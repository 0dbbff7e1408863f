"""CSRs as a requester makes them: with cryptography (make_csr) or `openssl req` (openssl_csr)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from requests_app import pki


def make_csr(
    *,
    cn: str | None = "host1.example.test",
    sans: list[x509.GeneralName] | None = None,
    key: pki.PrivateKey | None = None,
    key_type: str = "p256",
) -> str:
    """A PEM CSR signed by a fresh key (or the given one)."""
    key = key or pki.generate_private_key(key_type)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, pki.signature_hash(key) or None)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def openssl_csr(
    directory: Path, *, subject: str, key_spec: str = "rsa:2048", sans: str = ""
) -> Path:
    """Make a key and CSR with `openssl req`, as a requester would; return the CSR path."""
    key, csr = directory / "req.key", directory / "req.csr"
    args = ["openssl", "req", "-new", "-newkey", key_spec, "-nodes", "-keyout", str(key)]
    args += ["-out", str(csr), "-subj", subject]
    if sans:
        args += ["-addext", f"subjectAltName={sans}"]
    subprocess.run(args, check=True, capture_output=True)
    return csr


def der_of(pem: str) -> bytes:
    """The DER bytes of a PEM CSR."""
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
