"""Every state change of the Certificate Manager. Views, admin actions and management
commands parse their input, call one function here, and report what it returned or raised.

Each function runs in one transaction, writes an audit row, and sends its signal inside
that transaction (receivers defer side effects with `transaction.on_commit`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F

from . import ca as ca_store
from . import pki, profiles, signals
from .models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    StatusCount,
    normalize_public_id,
)

Status = CertificateRequest.Status
User = AbstractBaseUser


class ServiceError(Exception):
    """A refused operation; the message is meant for the person who asked."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRequest(ServiceError):
    """The input is bad (CSR, profile, email, SANs, validity); nothing was written."""


class InvalidTransition(ServiceError):
    """The request is not in a state that allows this action; nothing was written."""


class RequestNotFound(ServiceError):
    """No request has that ID."""


class CAUnavailable(ServiceError):
    """There is no CA, or its key cannot be opened; an administrator must act."""


# --- helpers ------------------------------------------------------------------------


def _label(actor: User | None, default: str) -> str:
    return actor.get_username() if actor is not None else default


def audit(
    action: str,
    *,
    actor: User | None,
    actor_label: str = "system",
    request: CertificateRequest | None = None,
    certificate: Certificate | None = None,
    ca: CertificateAuthority | None = None,
    ip: str | None = None,
    **details,
) -> AuditEvent:
    """Append one audit row."""
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=_label(actor, actor_label),
        action=action,
        request=request,
        certificate=certificate,
        ca=ca,
        ip=ip,
        details=details,
    )


def _move_count(old: str | None, new: str) -> None:
    if old is not None:
        StatusCount.objects.filter(status=old).update(count=F("count") - 1)
    if not StatusCount.objects.filter(status=new).update(count=F("count") + 1):
        StatusCount.objects.create(status=new, count=1)


def status_counts() -> dict[str, int]:
    """Requests per status, from the counters the services keep."""
    counts = dict.fromkeys(Status.values, 0)
    counts.update(StatusCount.objects.values_list("status", "count"))
    return counts


def _lock_request(request_id: str | int | CertificateRequest) -> CertificateRequest:
    """Lock the request row and read it again, so that concurrent actions serialize."""
    if isinstance(request_id, CertificateRequest):
        lookup = {"pk": request_id.pk}
    else:
        lookup = {"public_id": normalize_public_id(str(request_id))}
    try:
        return CertificateRequest.objects.select_for_update().get(**lookup)
    except CertificateRequest.DoesNotExist:
        raise RequestNotFound(f"no request has the ID {request_id}") from None


def _require_pending(req: CertificateRequest, action: str) -> None:
    if req.status != Status.PENDING:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status}, so it cannot be {action}"
        )


# --- submit -------------------------------------------------------------------------


@transaction.atomic
def submit_request(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str = "",
    note: str = "",
    extra_hostnames: Iterable[str] = (),
    ip: str | None = None,
    actor: User | None = None,
) -> CertificateRequest:
    """Check a CSR against a profile and put a pending request in the queue."""
    req = _build_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        note=note,
        extra_hostnames=list(extra_hostnames),
        ip=ip,
    )
    req.save()
    _move_count(None, Status.PENDING)
    audit(
        "request_submitted",
        actor=actor,
        actor_label="requester",
        request=req,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
    )
    signals.request_submitted.send(sender=CertificateRequest, request=req, actor=actor)
    return req


def _build_request(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str,
    note: str,
    extra_hostnames: list[str],
    ip: str | None,
) -> CertificateRequest:
    try:
        prof = profiles.get_profile(profile)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="profile") from None
    requester_email = (requester_email or "").strip()
    try:
        if any(ch in requester_email for ch in "\r\n"):
            raise ValidationError("newline")
        validate_email(requester_email)
    except ValidationError:
        raise InvalidRequest(
            f"{requester_email!r} is not a valid email address", field="requester_email"
        ) from None
    if any(ch in requester_name for ch in "\r\n"):
        raise InvalidRequest("the name must be on one line", field="requester_name")
    try:
        info = pki.check_csr(csr, allow_ed25519=prof.allow_ed25519)
    except pki.CSRError as exc:
        raise InvalidRequest(str(exc), field="csr") from None
    try:
        sans = profiles.requested_sans(
            prof,
            csr_sans=info.sans,
            subject_cn=pki.common_name(info.csr.subject),
            extra_hostnames=extra_hostnames,
            requester_email=requester_email,
        )
    except (profiles.ProfileError, pki.InvalidName) as exc:
        field = "extra_hostnames" if extra_hostnames else "csr"
        raise InvalidRequest(str(exc), field=field) from None
    return CertificateRequest(
        profile=prof.name,
        csr_pem=info.pem,
        subject=info.subject,
        key_type=info.key_type,
        key_size=info.key_size,
        public_key_sha256=info.public_key_sha256,
        requested_sans=sans,
        requester_name=requester_name.strip(),
        requester_email=requester_email,
        requester_note=note.strip(),
        submitter_ip=ip,
    )


# --- decisions ----------------------------------------------------------------------


@transaction.atomic
def approve_request(
    request_id: str | CertificateRequest,
    *,
    agent: User | None,
    validity_days: int | None = None,
    sans: list[str] | None = None,
    note: str = "",
    ip: str | None = None,
) -> Certificate:
    """Issue the certificate for a pending request, optionally with the agent's edits."""
    req = _lock_request(request_id)
    _require_pending(req, "approved")
    try:
        prof = profiles.get_profile(req.profile)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="profile") from None
    try:
        days = profiles.check_validity(prof, validity_days)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="validity_days") from None
    chosen = req.requested_sans if sans is None else list(sans)
    try:
        names = profiles.check_sans(prof, chosen, requester_email=req.requester_email)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="sans") from None
    try:
        cert = _issue(req, validity_days=days, sans=names)
    except pki.CAError as exc:
        raise CAUnavailable(f"cannot issue: {exc}") from None
    before = req.status
    req.status = Status.COMPLETE
    req.certificate = cert
    req.acted_by = agent
    req.agent_note = note.strip()
    req.save(update_fields=["status", "certificate", "acted_by", "agent_note", "updated_at"])
    _move_count(before, req.status)
    audit(
        "request_approved",
        actor=agent,
        request=req,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        validity_days=days,
        sans=cert.sans,
        edited_sans=sans is not None and list(sans) != req.requested_sans,
    )
    signals.certificate_issued.send(sender=Certificate, certificate=cert, request=req, actor=agent)
    return cert


def _issue(
    req: CertificateRequest, *, validity_days: int, sans: list[x509.GeneralName]
) -> Certificate:
    ca = ca_store.default_ca()
    prof = profiles.get_profile(req.profile)
    csr = pki.load_csr(req.csr_pem)
    cert = pki.issue_certificate(
        ca_cert=ca.certificate,
        ca_key=ca_store.load_key(ca),
        public_key=csr.public_key(),
        subject=csr.subject,
        sans=sans,
        extended_key_usages=list(prof.extended_key_usages),
        validity_days=validity_days,
        key_encipherment=prof.key_encipherment,
        ca_issuers_url=ca_store.ca_issuers_url(ca),
        crl_url=ca_store.crl_url(ca),
    )
    return Certificate.objects.create(
        ca=ca,
        serial=pki.serial_hex(cert.serial_number),
        subject=cert.subject.rfc4514_string(),
        sans=[pki.san_to_text(n) for n in sans],
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        profile=req.profile,
        pem=pki.to_pem(cert),
        fingerprint_sha256=cert.fingerprint(pki.hashes.SHA256()).hex(),
    )


@transaction.atomic
def reject_request(
    request_id: str | CertificateRequest, *, agent: User | None, reason: str, ip: str | None = None
) -> CertificateRequest:
    """Refuse a pending request; the reason is shown to the requester."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest("a reason is required to reject a request", field="reason")
    req = _lock_request(request_id)
    _require_pending(req, "rejected")
    before = req.status
    req.status = Status.REJECTED
    req.acted_by = agent
    req.agent_note = reason
    req.save(update_fields=["status", "acted_by", "agent_note", "updated_at"])
    _move_count(before, req.status)
    audit("request_rejected", actor=agent, request=req, ip=ip, reason=reason)
    signals.request_rejected.send(
        sender=CertificateRequest, request=req, reason=reason, actor=agent
    )
    return req


@transaction.atomic
def cancel_request(
    request_id: str | CertificateRequest,
    *,
    agent: User | None,
    note: str = "",
    ip: str | None = None,
) -> CertificateRequest:
    """Withdraw a pending request without a decision on its merits."""
    req = _lock_request(request_id)
    _require_pending(req, "canceled")
    before = req.status
    req.status = Status.CANCELED
    req.acted_by = agent
    req.agent_note = note.strip()
    req.save(update_fields=["status", "acted_by", "agent_note", "updated_at"])
    _move_count(before, req.status)
    audit("request_canceled", actor=agent, request=req, ip=ip, note=req.agent_note)
    signals.request_canceled.send(sender=CertificateRequest, request=req, actor=agent)
    return req


@transaction.atomic
def issue_certificate(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str = "",
    extra_hostnames: Iterable[str] = (),
    validity_days: int | None = None,
    actor: User | None = None,
) -> Certificate:
    """Submit and approve in one step (for administrators)."""
    req = submit_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        extra_hostnames=extra_hostnames,
        actor=actor,
    )
    return approve_request(req, agent=actor, validity_days=validity_days)


@dataclass
class BulkResult:
    approved: list[Certificate]
    refused: list[tuple[str, str]]  # (request ID, why)


def approve_all_pending(
    *,
    agent: User | None,
    validity_days: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Approve every pending request, each in its own transaction, oldest first."""
    ids = list(
        CertificateRequest.objects.filter(status=Status.PENDING)
        .order_by("submitted_at", "pk")
        .values_list("public_id", flat=True)
    )
    result = BulkResult(approved=[], refused=[])
    for done, public_id in enumerate(ids, start=1):
        try:
            result.approved.append(
                approve_request(public_id, agent=agent, validity_days=validity_days)
            )
        except ServiceError as exc:
            result.refused.append((public_id, exc.message))
        if progress:
            progress(done, len(ids))
    return result


# --- CAs ----------------------------------------------------------------------------


def _store_ca(
    cert: x509.Certificate,
    key: pki.PrivateKey,
    chain: list[x509.Certificate],
    *,
    force: bool,
) -> CertificateAuthority:
    current = CertificateAuthority.objects.select_for_update().filter(is_default=True).first()
    if current is not None and not force:
        raise pki.CAError(
            f"a CA already exists ({current.name}); use --force to make a new one the default "
            "(the old one stays, for the certificates it issued)"
        )
    serial = pki.serial_hex(cert.serial_number)
    filename = f"ca-{serial[:24]}.key.pem"
    if CertificateAuthority.objects.filter(key_filename=filename).exists():
        raise pki.CAError("this CA certificate is already installed")
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
        raise pki.CAError("another CA was created at the same time; try again") from None
    # Written last: if anything above fails the transaction leaves no orphan key behind.
    try:
        ca_store.write_key_file(filename, key)
    except FileExistsError:
        raise pki.CAError(f"a key file {filename} already exists in CA_KEY_DIR") from None
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
    key, cert = pki.create_ca(subject, key_type=key_type, validity_days=validity_days)
    ca = _store_ca(cert, key, [], force=force)
    audit("ca_created", actor=actor, ca=ca, subject=ca.subject, key_type=key_type)
    return ca


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
    certs = pki.load_certificates(cert_data)
    cert, chain = certs[0], certs[1:]
    if chain_data:
        chain += pki.load_certificates(chain_data)
    chain = [c for c in chain if c != cert]
    key = pki.load_private_key(key_data, key_passphrase, what="the CA key")
    pki.check_ca(cert, key, chain)
    ca = _store_ca(cert, key, chain, force=force)
    audit("ca_imported", actor=actor, ca=ca, subject=ca.subject, chain_length=len(chain))
    return ca


# --- agents -------------------------------------------------------------------------

AGENTS_GROUP = "Certificate Manager Agents"


def agents_group():
    """The agents group with the approve permission (made by a migration; remade if missing)."""
    from django.contrib.auth.models import Group, Permission

    group, created = Group.objects.get_or_create(name=AGENTS_GROUP)
    if created:
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label="requests_app",
                codename__in=[
                    "approve_certificaterequest",
                    "view_certificaterequest",
                    "view_certificate",
                    "view_auditevent",
                    "view_certificateauthority",
                ],
            )
        )
    return group


@transaction.atomic
def create_agent(username: str, *, email: str, password: str, actor: User | None = None):
    """Create a user in the agents group (staff, so the admin is open to them)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    model = get_user_model()
    if model.objects.filter(username=username).exists():
        raise InvalidRequest(f"a user named {username!r} already exists", field="username")
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidRequest(f"{email!r} is not a valid email address", field="email") from None
    user = model(username=username, email=email, is_staff=True)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidRequest(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    user.groups.add(agents_group())
    audit("agent_created", actor=actor, username=username, email=email)
    return user


# --- server-side keys (issue 5: retrieval and import) ---------------------------------


# --- revocation (issue 7: revocation, CRL, OCSP) --------------------------------------


# --- renewals (issue 8: the Dogtag end-entity protocol) -------------------------------
