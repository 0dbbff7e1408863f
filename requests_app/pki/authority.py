"""Certificate authorities: the root CA certificate we make, the CAs we import and their
checks, the chain order, and the authority key identifier of everything a CA signs."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .clock import utcnow
from .errors import CAError
from .keys import (
    CA_KEY_TYPES,
    EC_CURVES,
    RSA_MIN_BITS,
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_description,
    same_public_key,
    sign,
)
from .names import parse_dn

#: What a CA certificate may do: sign certificates and CRLs (and OCSP answers itself).
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def check_new_ca(subject: str, *, key_type: str, validity_days: int) -> None:
    """Refuse the options of a new root CA before any key is made for it."""
    if key_type not in CA_KEY_TYPES:
        raise CAError(f"unknown CA key type {key_type!r}; use one of {', '.join(CA_KEY_TYPES)}")
    if validity_days < 1 or validity_days > 36500:
        raise CAError("the CA validity must be between 1 and 36500 days")
    parse_dn(subject)


def ca_certificate_builder(
    subject: str,
    public_key: PublicKey,
    *,
    validity_days: int,
    now: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """The unsigned certificate of a self-signed root CA for public_key."""
    name = parse_dn(subject)
    now = now or utcnow()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )


def create_ca(
    subject: str,
    *,
    key_type: str = "p256",
    validity_days: int = 3650,
    now: dt.datetime | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """Create a self-signed root CA held in memory: key and certificate (tests, tools)."""
    check_new_ca(subject, key_type=key_type, validity_days=validity_days)
    key = generate_private_key(key_type)
    builder = ca_certificate_builder(
        subject, key.public_key(), validity_days=validity_days, now=now
    )
    return key, sign(builder, key)


def authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI of what ca_cert's key signs: its SKI, or one computed from its key."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one DER certificate."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CAError("could not read a certificate (PEM or DER) from the data given") from None


def issuer_order(cert: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    """The chain from cert's issuer up to the root, whatever order the file gave it in.
    Certificates that are nobody's issuer stay at the end, for check_ca to refuse."""
    ordered, current, rest = [], cert, list(pool)
    while current.issuer != current.subject:
        parent = next((c for c in rest if c.subject == current.issuer), None)
        if parent is None:
            break
        ordered.append(parent)
        rest.remove(parent)
        current = parent
    return ordered + rest


def check_ca(
    cert: x509.Certificate,
    key: PublicKey | PrivateKey,
    chain: list[x509.Certificate] | None = None,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Refuse a CA unless the key matches and is strong enough, it is a CA certificate valid
    now, and each certificate of the chain is a CA that issued the one before it."""
    if not same_public_key(cert.public_key(), key):
        raise CAError("the private key does not match the CA certificate")
    _check_ca_key(key.public_key() if hasattr(key, "private_bytes") else key)
    now = now or utcnow()
    _check_ca_certificate(cert, now, what="the certificate")
    child = cert
    for parent in chain or []:
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CAError(
                f"the chain is broken: {child.subject.rfc4514_string()} was not issued by "
                f"{parent.subject.rfc4514_string()} ({type(exc).__name__})"
            ) from None
        _check_ca_certificate(parent, now, what=f"the chain's {parent.subject.rfc4514_string()}")
        child = parent


def _check_ca_key(key: PublicKey) -> None:
    # The CA's key signs every certificate: hold it to at least the policy for CSR keys.
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_MIN_BITS:
        raise CAError(
            f"the CA key is RSA {key.key_size} bits; at least {RSA_MIN_BITS} are required"
        )
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in EC_CURVES:
        raise CAError(
            f"the CA key's curve {key.curve.name} is not accepted; use P-256, P-384 or P-521"
        )
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CAError(f"the CA key is {key_description(key)[0]}; use RSA or EC")


def _check_ca_certificate(cert: x509.Certificate, now: dt.datetime, *, what: str) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CAError(f"{what} is not a CA certificate (basicConstraints CA:TRUE is missing)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise CAError(f"{what} has a keyUsage that does not allow keyCertSign")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CAError(
            f"{what} is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when issuer's key signed cert (used by tests and by import checks)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True
