"""A CA hierarchy: a subordinate whose key is made here and whose certificate an outside
(offline) root signs (a CSR now, the certificate later), and a subordinate signed by a root
held here. Every key is made, stored and used through the CA's key backend."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from .. import keys, pki, signals
from ..models import CertificateAuthority
from .audit_log import audit
from .authorities import _key_backend, _store_ca, hand_over_default, store_key_last
from .errors import CARefused

User = AbstractBaseUser
Status = CertificateAuthority.Status

#: A subordinate made with --parent and no --path-length issues leaves only.
DEFAULT_SUBORDINATE_PATH_LENGTH = 0


def _constraint_details(
    path_length: int | None, permitted_dns: Sequence[str], excluded_dns: Sequence[str]
) -> dict:
    return {
        "path_length": path_length,
        "permitted_dns": [pki.dns_constraint(n) for n in permitted_dns],
        "excluded_dns": [pki.dns_constraint(n) for n in excluded_dns],
    }


@transaction.atomic
def request_subordinate_ca(
    subject: str,
    *,
    key_type: str = "p256",
    path_length: int | None = None,
    permitted_dns: Sequence[str] = (),
    excluded_dns: Sequence[str] = (),
    key_backend: str = keys.DEFAULT_ALIAS,
    key_options: dict | None = None,
    actor: User | None = None,
) -> CertificateAuthority:
    """Make a subordinate CA's key in key_backend (with that backend's key_options) and its
    CSR for an outside root; the CA stays pending (not usable, not the default) until
    complete_subordinate_ca."""
    backend = _key_backend(key_backend)
    try:
        pki.check_new_ca(subject, key_type=key_type, validity_days=1)  # the root sets validity
        builder = pki.subordinate_csr_builder(
            subject,
            path_length=path_length,
            permitted_dns=permitted_dns,
            excluded_dns=excluded_dns,
        )
        details = _constraint_details(path_length, permitted_dns, excluded_dns)
        key = backend.generate_key(key_type, **(key_options or {}))
        csr = backend.sign_with_new_key(key, builder)
        filename = backend.pending_key_reference(key.public_key, key)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    if CertificateAuthority.with_pending.filter(key_filename=filename).exists():
        raise CARefused("a CA with this key already exists")
    ca = CertificateAuthority.with_pending.create(
        name=pki.common_name(csr.subject) or csr.subject.rfc4514_string(),
        subject=csr.subject.rfc4514_string(),
        certificate_pem="",
        key_type=key.key_type,
        key_backend=backend.alias,
        key_filename=filename,
        serial="",
        status=Status.PENDING,
        csr_pem=pki.csr_to_pem(csr),
    )
    audit("ca_csr_created", actor=actor, ca=ca, subject=ca.subject, key_type=key_type, **details)
    store_key_last(backend, ca, key, filename)
    return ca


def _require_key_cert_sign(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign:
        raise CARefused(
            "the certificate is not a CA certificate: its keyUsage does not allow keyCertSign"
        )


def _pending_for(cert: x509.Certificate) -> CertificateAuthority:
    """The pending CA whose key the certificate certifies, locked; CARefused otherwise."""
    wanted = pki.public_key_sha256(cert.public_key())
    for ca in CertificateAuthority.with_pending.select_for_update().filter(status=Status.PENDING):
        if pki.public_key_sha256(pki.load_csr(ca.csr_pem).public_key()) == wanted:
            return ca
    fingerprint = pki.sha256_hex(cert)
    for ca in CertificateAuthority.objects.all():
        if pki.sha256_hex(ca.certificate) == fingerprint or pki.same_public_key(
            ca.certificate.public_key(), cert.public_key()
        ):
            raise CARefused(f"this CA is already complete and installed (CA {ca.pk}, {ca.name})")
    raise CARefused(
        "the certificate is for another key: no pending CA (init_ca --csr-only) holds the "
        "private key of its public key"
    )


@transaction.atomic
def complete_subordinate_ca(
    cert_data: bytes,
    *,
    chain_data: bytes | None = None,
    force: bool = False,
    key_backend: str | None = None,
    key_options: dict | None = None,
    actor: User | None = None,
) -> CertificateAuthority:
    """Complete a pending CA with the certificate an outside root signed for its CSR: the
    certificate must certify the pending key, be a CA certificate, and chain up to a
    self-signed root (in chain_data or after the certificate). It becomes the default.
    key_backend and key_options, if given, must name where the pending key is."""
    try:
        certs = pki.load_certificates(cert_data)
        cert, chain = certs[0], certs[1:]
        if chain_data:
            chain += pki.load_certificates(chain_data)
        chain = pki.issuer_order(cert, [c for c in chain if c != cert])
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    ca = _pending_for(cert)
    if key_backend is not None and key_backend != ca.key_backend:
        raise CARefused(
            f"the key of the pending CA {ca.pk} ({ca.name}) is in the key backend "
            f"{ca.key_backend!r}, not {key_backend!r}"
        )
    try:
        keys.backend_for(ca).check_key_options(ca, **(key_options or {}))
    except pki.CAError as exc:
        raise CARefused(str(exc)) from None
    try:
        pki.check_ca(cert, cert.public_key(), chain)
        pki.check_chain_to_root(cert, chain)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    _require_key_cert_sign(cert)
    current = CertificateAuthority.objects.select_for_update().filter(is_default=True).first()
    if current is not None and not force:
        raise CARefused(
            f"a CA already exists ({current.name}); use --force (or --make-default) to make "
            "the completed one the default (the old one stays, for the certificates it issued)"
        )
    if current is not None:
        hand_over_default(current, chain)
    ca.name = pki.common_name(cert.subject) or cert.subject.rfc4514_string()
    ca.subject = cert.subject.rfc4514_string()
    ca.certificate_pem = pki.to_pem(cert)
    ca.chain_pem = "".join(pki.to_pem(c) for c in chain)
    ca.serial = pki.serial_hex(cert.serial_number)
    ca.not_before = cert.not_valid_before_utc
    ca.not_after = cert.not_valid_after_utc
    ca.status = Status.ACTIVE
    ca.is_default = True
    try:
        with transaction.atomic():
            ca.save()
    except IntegrityError:
        raise CARefused("another CA was made the default at the same time; try again") from None
    try:  # the key the backend holds must be the one the root certified
        keys.backend_for(ca).check_usable(ca)
    except pki.CAError as exc:
        raise CARefused(f"the CA's key cannot sign: {exc}") from None
    transaction.on_commit(CertificateAuthority.objects.forget_default)
    CertificateAuthority.objects.forget_default()
    audit(
        "ca_completed",
        actor=actor,
        ca=ca,
        subject=ca.subject,
        issuer=cert.issuer.rfc4514_string(),
        serial=ca.serial,
        chain_length=len(chain),
    )
    signals.ca_installed.send(
        sender=CertificateAuthority, ca=ca, action="ca_completed", actor=actor
    )
    return ca


@transaction.atomic
def create_subordinate_ca(
    subject: str,
    *,
    parent_id: int,
    key_type: str = "p256",
    validity_days: int = 1825,
    path_length: int | None = None,
    permitted_dns: Sequence[str] = (),
    excluded_dns: Sequence[str] = (),
    force: bool = False,
    key_backend: str = keys.DEFAULT_ALIAS,
    key_options: dict | None = None,
    actor: User | None = None,
) -> CertificateAuthority:
    """Make a subordinate CA signed by a CA held here (parent_id), its key made by
    key_backend (with that backend's key_options), and make it the default: without force
    only when the parent is the default (it hands issuing over)."""
    parent = CertificateAuthority.objects.select_for_update().filter(pk=parent_id).first()
    if parent is None:
        raise CARefused(f"no CA has the id {parent_id}; show_ca lists them")
    if parent.status != Status.ACTIVE:
        raise CARefused(f"CA {parent.pk} ({parent.name}) is {parent.status}: it signs no new CA")
    backend = _key_backend(key_backend)
    wanted = DEFAULT_SUBORDINATE_PATH_LENGTH if path_length is None else path_length
    try:
        pki.check_new_ca(subject, key_type=key_type, validity_days=validity_days)
        length = pki.check_path_length(wanted, parent.certificate, parent.chain)
        details = _constraint_details(length, permitted_dns, excluded_dns)
        keys.backend_for(parent).check_usable(parent)
        key = backend.generate_key(key_type, **(key_options or {}))
        builder = pki.subordinate_certificate_builder(
            parent=parent.certificate,
            subject=subject,
            public_key=key.public_key,
            validity_days=validity_days,
            path_length=length,
            permitted_dns=permitted_dns,
            excluded_dns=excluded_dns,
        )
        cert = keys.backend_for(parent).sign_certificate(parent, builder)
    except pki.PKIError as exc:
        raise CARefused(str(exc)) from None
    return _store_ca(
        cert,
        key,
        parent.full_chain,
        backend=backend,
        force=force,
        actor=actor,
        action="ca_subordinate_created",
        parent=parent,
        parent_id=parent.pk,
        key_type=key_type,
        **details,
    )
