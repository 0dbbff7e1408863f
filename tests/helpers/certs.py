"""CAs and certificates for the CA tests: roots, hand-built CA certificates, end-entity
certificates, PEM files, and the outside checkers (`openssl verify`, pkilint)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from functools import cache
from pathlib import Path

from cryptography import x509

from requests_app import pki

# pkilint's CLI sits next to the interpreter running the tests (the virtualenv's bin/).
LINT = str(Path(sys.executable).parent / "lint_pkix_cert")


def pkilint(path: Path) -> subprocess.CompletedProcess:
    """Run pkilint's RFC 5280 linter on a PEM file, reporting ERROR and worse."""
    return subprocess.run(
        [LINT, "lint", "-s", "ERROR", str(path)], capture_output=True, text=True, check=False
    )


def assert_lints_clean(path: Path) -> None:
    """pkilint exits 0 and prints no finding for the certificate in path."""
    result = pkilint(path)
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stderr


def openssl_verify(leaf: Path, *, ca_file: Path, untrusted: Path | None = None):
    """`openssl verify` of leaf against ca_file (and untrusted intermediates)."""
    args = ["openssl", "verify", "-CAfile", str(ca_file)]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    return subprocess.run([*args, str(leaf)], capture_output=True, text=True, check=False)


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    """Write certs to path as one PEM bundle, in the order given; return path."""
    path.write_text(pki.to_fullchain_pem(list(certs)))
    return path


@cache
def root(key_type: str = "p256") -> tuple[pki.PrivateKey, x509.Certificate]:
    """One self-signed root per key type for the whole test run (RSA 4096 is slow to make)."""
    return pki.create_ca(f"CN=Root {key_type},O=ca-portal tests,C=US", key_type=key_type)


def make_ca_cert(
    subject: str,
    key: pki.PrivateKey,
    *,
    issuer: tuple[pki.PrivateKey, x509.Certificate] | None = None,
    ca: bool = True,
    key_cert_sign: bool = True,
    not_before: dt.datetime | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A (CA) certificate for key, signed by issuer or self-signed, built by hand."""
    name = pki.parse_dn(subject)
    issuer_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, name)
    not_before = not_before or pki.utcnow() - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, pki.signature_hash(issuer_key))


def issue(ca: tuple[pki.PrivateKey, x509.Certificate], **overrides) -> x509.Certificate:
    """An end-entity certificate from ca with sensible defaults."""
    key = overrides.pop("key", None) or pki.generate_private_key("p256")
    options = {
        "ca_cert": ca[1],
        "ca_key": ca[0],
        "public_key": key.public_key(),
        "subject": pki.parse_dn("CN=leaf.example.com"),
        "sans": [x509.DNSName("leaf.example.com")],
        "extended_key_usages": ["serverAuth"],
        "validity_days": 30,
        **overrides,
    }
    return pki.issue_certificate(**options)
