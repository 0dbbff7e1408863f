"""Certificate authorities: create a root, import an existing CA; either becomes the default."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from .. import keys, pki, signals
from ..models import CertificateAuthority
from .audit_log import audit
from .errors import CARefused, CAUnavailable

User = AbstractBaseUser

MIN_NEW_PASSPHRASE_LENGTH = 20


def _store_ca(
    cert: pki.X509Certificate,
    key: keys.NewKey,
    chain: list[pki.X509Certificate],
    *,
    backend: keys.KeyBackend,
    force: bool,
    actor: User | None,
    action: str,
    parent: CertificateAuthority | None = None,
    **details,
) -> CertificateAuthority:
    """Save a checked CA as the new default, audit it, then hand its key to the backend (last)."""
    current = CertificateAuthority.objects.select_for_update().filter(is_default=True).first()
    # A subordinate signed by the default root here takes over issuing from it.
    if current is not None and not force and not (parent is not None and parent.pk == current.pk):
        raise CARefused(
            f"a CA already exists ({current.name}); use --force to make a new one the default "
            "(the old one stays, for the certificates it issued)"
        )
    serial = pki.serial_hex(cert.serial_number)
    filename = backend.key_reference(cert, key)
    existing = CertificateAuthority.with_pending.filter(key_filename=filename).first()
    if existing is not None and existing.is_pending:
        raise CARefused(
            f"the key is that of the pending CA {existing.pk} ({existing.name}): complete it "
            "with import_ca --certificate FILE, without naming its key"
        )
    if existing is not None:
        raise CARefused("this CA certificate is already installed")
    if current is not None:
        hand_over_default(current, chain)
    ca = CertificateAuthority(
        name=pki.common_name(cert.subject) or cert.subject.rfc4514_string(),
        subject=cert.subject.rfc4514_string(),
        certificate_pem=pki.to_pem(cert),
        chain_pem="".join(pki.to_pem(c) for c in chain),
        key_type=key.key_type,
        key_backend=backend.alias,
        key_filename=filename,
        serial=serial,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_default=True,
        parent=parent,
    )
    try:
        ca.save()
    except IntegrityError:
        raise CARefused("another CA was created at the same time; try again") from None
    transaction.on_commit(CertificateAuthority.objects.forget_default)
    CertificateAuthority.objects.forget_default()
    audit(action, actor=actor, ca=ca, subject=ca.subject, **details)
    signals.ca_installed.send(sender=CertificateAuthority, ca=ca, action=action, actor=actor)
    store_key_last(backend, ca, key, filename)
    return ca


def store_key_last(backend, ca: CertificateAuthority, key, filename: str) -> None:
    """Hand a new CA's key to its backend, as the last step of the CA's transaction: if
    anything before it fails, no orphan key is left behind."""
    try:
        backend.store_key(ca, key)
    except pki.CAError as exc:
        raise CARefused(str(exc)) from None
    except OSError as exc:
        raise CARefused(f"cannot write the key file {filename}: {exc.strerror or exc}") from None


def hand_over_default(current: CertificateAuthority, chain: list[pki.X509Certificate]) -> None:
    """The default CA gives way to a new one (rollover): it is retired (it keeps its CRL and
    OCSP answers for what it issued) unless it is one of the new CA's issuers, which stays
    active to sign subordinates."""
    current.is_default = False
    issuer = any(pki.sha256_hex(c) == pki.sha256_hex(current.certificate) for c in chain)
    current.status = current.Status.ACTIVE if issuer else current.Status.RETIRED
    current.save(update_fields=["is_default", "status"])


def _key_backend(alias: str) -> keys.KeyBackend:
    """The backend under alias, or CARefused naming the configured ones."""
    if alias not in keys.backends:
        raise CARefused(
            f"no key backend {alias!r} in CA_KEY_BACKENDS (configured: {', '.join(keys.backends)})"
        )
    try:
        return keys.backends[alias]
    except ImproperlyConfigured as exc:
        raise CARefused(str(exc)) from None


@transaction.atomic
def create_ca(
    subject: str,
    *,
    key_type: str = "p256",
    validity_days: int = 3650,
    force: bool = False,
    actor: User | None = None,
    key_backend: str = keys.DEFAULT_ALIAS,
    key_options: dict | None = None,
) -> CertificateAuthority:
    """Create a self-signed root CA, its key made by key_backend (with that backend's
    key_options), and make it the default."""
    backend = _key_backend(key_backend)
    try:
        pki.check_new_ca(subject, key_type=key_type, validity_days=validity_days)
        key = backend.generate_key(key_type, **(key_options or {}))
        builder = pki.ca_certificate_builder(subject, key.public_key, validity_days=validity_days)
        cert = backend.sign_with_new_key(key, builder)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    return _store_ca(
        cert,
        key,
        [],
        backend=backend,
        force=force,
        actor=actor,
        action="ca_created",
        key_type=key_type,
    )


@transaction.atomic
def import_ca(
    cert_data: bytes,
    key_data: bytes | None,
    *,
    chain_data: bytes | None = None,
    key_passphrase: str | None = None,
    force: bool = False,
    actor: User | None = None,
    key_backend: str = keys.DEFAULT_ALIAS,
    key_options: dict | None = None,
) -> CertificateAuthority:
    """Import an existing (root or intermediate) CA with its chain after checking it; its
    key is given (key_data), or already held by key_backend (named by key_options)."""
    backend = _key_backend(key_backend)
    try:
        certs = pki.load_certificates(cert_data)
        cert, chain = certs[0], certs[1:]
        if chain_data:
            chain += pki.load_certificates(chain_data)
        chain = pki.issuer_order(cert, [c for c in chain if c != cert])
        key = backend.import_key(key_data, key_passphrase, **(key_options or {}))
        pki.check_ca(cert, key.public_key, chain)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    return _store_ca(
        cert,
        key,
        chain,
        backend=backend,
        force=force,
        actor=actor,
        action="ca_imported",
        chain_length=len(chain),
    )


@transaction.atomic
def rewrap_keys(*, new_passphrase: str | None = None, actor: User | None = None) -> list:
    """Re-encrypt every CA and OCSP responder key at rest with the strong KDF (and under a new
    passphrase if given), in every key backend; idempotent. The files change before the
    audit row commits: a failed commit leaves keys rewrapped (same keys, stronger wrap) but
    never a half-changed passphrase, since each backend opens every file before writing any."""
    if new_passphrase is not None and len(new_passphrase) < MIN_NEW_PASSPHRASE_LENGTH:
        raise CARefused(
            f"the new passphrase must have at least {MIN_NEW_PASSPHRASE_LENGTH} characters"
        )
    results: list[keys.Rewrapped] = []
    for alias in keys.backends:
        try:
            results += keys.backends[alias].rewrap_keys(new_passphrase)
        except pki.CAError as exc:
            raise CAUnavailable(str(exc)) from None
        except OSError as exc:
            raise CAUnavailable(f"cannot rewrap the keys of {alias!r}: {exc}") from None
    changed = [r for r in results if r.after is not None]
    audit(
        "keys_rewrapped",
        actor=actor,
        rewrapped=[f"{r.backend}:{r.name}" for r in changed],
        unchanged=len(results) - len(changed),
        new_passphrase=new_passphrase is not None,
    )
    signals.keys_rewrapped.send(sender=CertificateAuthority, rewrapped=len(changed), actor=actor)
    return results
