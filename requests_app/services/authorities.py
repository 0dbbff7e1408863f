"""Certificate authorities: create a root, import an existing CA; either becomes the default."""

from __future__ import annotations

from cryptography import x509
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from .. import ca as ca_store
from .. import pki, signals
from ..models import CertificateAuthority
from .audit_log import audit
from .errors import CARefused

User = AbstractBaseUser


def _store_ca(
    cert: x509.Certificate,
    key: pki.PrivateKey,
    chain: list[x509.Certificate],
    *,
    force: bool,
    actor: User | None,
    action: str,
    **details,
) -> CertificateAuthority:
    """Save a checked CA as the new default, audit it, then write its key file (last)."""
    current = CertificateAuthority.objects.select_for_update().filter(is_default=True).first()
    if current is not None and not force:
        raise CARefused(
            f"a CA already exists ({current.name}); use --force to make a new one the default "
            "(the old one stays, for the certificates it issued)"
        )
    serial = pki.serial_hex(cert.serial_number)
    filename = f"ca-{serial[:24]}.key.pem"
    if CertificateAuthority.objects.filter(key_filename=filename).exists():
        raise CARefused("this CA certificate is already installed")
    if current is not None:
        current.is_default = False
        current.save(update_fields=["is_default"])
    ca = CertificateAuthority(
        name=pki.common_name(cert.subject) or cert.subject.rfc4514_string(),
        subject=cert.subject.rfc4514_string(),
        certificate_pem=pki.to_pem(cert),
        chain_pem="".join(pki.to_pem(c) for c in chain),
        key_type=pki.key_type_of(key),
        key_filename=filename,
        serial=serial,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_default=True,
    )
    try:
        ca.save()
    except IntegrityError:
        raise CARefused("another CA was created at the same time; try again") from None
    transaction.on_commit(ca_store.forget_default_ca)
    ca_store.forget_default_ca()
    audit(action, actor=actor, ca=ca, subject=ca.subject, **details)
    signals.ca_installed.send(sender=CertificateAuthority, ca=ca, action=action, actor=actor)
    # Written last: if anything above fails the transaction leaves no orphan key behind.
    try:
        ca_store.write_key_file(filename, key)
    except FileExistsError:
        raise CARefused(f"a key file {filename} already exists in CA_KEY_DIR") from None
    except OSError as exc:
        raise CARefused(f"cannot write the key file {filename}: {exc.strerror or exc}") from None
    return ca


@transaction.atomic
def create_ca(
    subject: str,
    *,
    key_type: str = "p256",
    validity_days: int = 3650,
    force: bool = False,
    actor: User | None = None,
) -> CertificateAuthority:
    """Create a self-signed root CA, store its key encrypted, and make it the default."""
    try:
        key, cert = pki.create_ca(subject, key_type=key_type, validity_days=validity_days)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    return _store_ca(
        cert, key, [], force=force, actor=actor, action="ca_created", key_type=key_type
    )


@transaction.atomic
def import_ca(
    cert_data: bytes,
    key_data: bytes,
    *,
    chain_data: bytes | None = None,
    key_passphrase: str | None = None,
    force: bool = False,
    actor: User | None = None,
) -> CertificateAuthority:
    """Import an existing (root or intermediate) CA with its chain after checking it."""
    try:
        certs = pki.load_certificates(cert_data)
        cert, chain = certs[0], certs[1:]
        if chain_data:
            chain += pki.load_certificates(chain_data)
        chain = _issuer_order(cert, [c for c in chain if c != cert])
        key = pki.load_private_key(key_data, key_passphrase, what="the CA key")
        pki.check_ca(cert, key, chain)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    return _store_ca(
        cert, key, chain, force=force, actor=actor, action="ca_imported", chain_length=len(chain)
    )


def _issuer_order(cert: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
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
