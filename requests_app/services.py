"""Every state change of the Certificate Manager. Views, admin actions and management
commands parse their input, call one function here, and report what it returned or raised.

Each function runs in one transaction, writes an audit row, and sends its signal inside
that transaction (receivers defer side effects with `transaction.on_commit`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import ca as ca_store
from . import keygen, pki, profiles, signals
from .models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    StatusCount,
    normalize_public_id,
    normalize_serial,
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
    """One request moved from old (None: it is new) to new; one statement either way."""
    if old is None:
        updated = StatusCount.objects.filter(status=new).update(count=F("count") + 1)
    else:
        updated = StatusCount.objects.filter(status__in=[old, new]).update(
            count=F("count") + Case(When(status=new, then=Value(1)), default=Value(-1))
        )
    if updated < (1 if old is None else 2):  # a counter row is missing (e.g. a flushed test DB)
        for status, delta in ((old, -1), (new, 1)):
            if status is not None:
                StatusCount.objects.get_or_create(status=status, defaults={"count": max(delta, 0)})


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
    channel: str = "web",
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
        channel=channel,
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
    channel: str,
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
        channel=channel,
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
    prof, days, names = _check_approval(req, validity_days=validity_days, sans=sans)
    ca = _signing_ca()
    cert = _sign(req, prof, ca, validity_days=days, sans=names)
    cert.save(force_insert=True)
    _complete(req, cert, agent=agent, note=note)
    req.save(update_fields=["status", "certificate", "acted_by", "agent_note", "updated_at"])
    _move_count(Status.PENDING, Status.COMPLETE)
    edited = sans is not None and list(sans) != req.requested_sans
    _approval_audit(req, cert, agent=agent, ip=ip, days=days, edited_sans=edited).save()
    signals.certificate_issued.send(sender=Certificate, certificate=cert, request=req, actor=agent)
    return cert


def _check_approval(
    req: CertificateRequest, *, validity_days: int | None, sans: list[str] | None
) -> tuple[profiles.Profile, int, list[x509.GeneralName]]:
    """The profile, validity and SANs to issue with, each checked against the profile."""
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
    return prof, days, names


def _signing_ca() -> CertificateAuthority:
    """The default CA with its key opened (once per process), or CAUnavailable."""
    try:
        ca = ca_store.default_ca()
        ca_store.load_key(ca)
    except pki.CAError as exc:
        raise CAUnavailable(f"cannot issue: {exc}") from None
    return ca


def _sign(
    req: CertificateRequest,
    prof: profiles.Profile,
    ca: CertificateAuthority,
    *,
    validity_days: int,
    sans: list[x509.GeneralName],
) -> Certificate:
    """Build and sign the certificate for req; returns it unsaved."""
    if req.csr_pem or req.renewal_of_id is None:
        csr = pki.load_csr(req.csr_pem)
        public_key, subject = csr.public_key(), csr.subject
    else:  # a renewal by serial (Dogtag protocol) has no CSR: the renewed certificate's key
        if req.renewal_of.status == Certificate.Status.REVOKED:
            raise InvalidTransition(
                f"certificate {req.renewal_of.serial} was revoked after this renewal was "
                "requested; reject the request"
            )
        public_key, subject = req.renewal_of.x509.public_key(), req.renewal_of.x509.subject
    try:
        cert = pki.issue_certificate(
            ca_cert=ca.certificate,
            ca_key=ca_store.load_key(ca),
            public_key=public_key,
            subject=subject,
            sans=sans,
            extended_key_usages=list(prof.extended_key_usages),
            validity_days=validity_days,
            key_encipherment=prof.key_encipherment,
            ca_issuers_url=ca_store.ca_issuers_url(ca),
            crl_url=ca_store.crl_url(ca),
            ocsp_url=f"{settings.SITE_URL}/ocsp",
        )
    except pki.PKIError as exc:
        raise CAUnavailable(f"cannot issue: {exc}") from None
    return Certificate(
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


def _complete(req: CertificateRequest, cert: Certificate, *, agent: User | None, note: str) -> None:
    req.status = Status.COMPLETE
    req.certificate = cert
    req.acted_by = agent
    req.agent_note = note.strip()
    req.updated_at = timezone.now()


def _approval_audit(
    req: CertificateRequest,
    cert: Certificate,
    *,
    agent: User | None,
    ip: str | None,
    days: int,
    edited_sans: bool,
) -> AuditEvent:
    """The request_approved audit row, unsaved (the bulk path inserts many at once)."""
    return AuditEvent(
        actor=agent,
        actor_label=_label(agent, "system"),
        action="request_approved",
        request=req,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        details={
            "serial": cert.serial,
            "validity_days": days,
            "sans": cert.sans,
            "edited_sans": edited_sans,
        },
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
    chunk_size: int = 250,
) -> BulkResult:
    """Approve every pending request, oldest first, a chunk per transaction.

    The bulk path: each chunk's rows are locked together (skipping rows another agent
    holds), signed, and written with one INSERT per table; every certificate still gets
    its audit row and its certificate_issued signal, as with approve_request."""
    ids = list(
        CertificateRequest.objects.filter(status=Status.PENDING)
        .order_by("submitted_at", "pk")
        .values_list("pk", flat=True)
    )
    result = BulkResult(approved=[], refused=[])
    ca = _signing_ca()
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        result.approved += _approve_chunk(chunk, ca, agent, validity_days, result.refused)
        if progress:
            progress(min(start + chunk_size, len(ids)), len(ids))
    return result


@transaction.atomic
def _approve_chunk(ids, ca, agent, validity_days, refused) -> list[Certificate]:
    reqs = list(
        CertificateRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids, status=Status.PENDING)
        .select_related("renewal_of")
        .order_by("submitted_at", "pk")
    )
    issued: list[tuple[CertificateRequest, Certificate, int]] = []
    for req in reqs:
        try:
            prof, days, names = _check_approval(req, validity_days=validity_days, sans=None)
            issued.append((req, _sign(req, prof, ca, validity_days=days, sans=names), days))
        except ServiceError as exc:
            refused.append((req.public_id, exc.message))
    if not issued:
        return []
    certs = Certificate.objects.bulk_create([cert for _, cert, _ in issued])
    for req, cert, _ in issued:
        _complete(req, cert, agent=agent, note="")
    first = issued[0][0]
    CertificateRequest.objects.filter(pk__in=[req.pk for req, _, _ in issued]).update(
        status=Status.COMPLETE, acted_by=agent, agent_note="", updated_at=first.updated_at
    )
    # One statement per row, sent as a batch: QuerySet.bulk_update builds a CASE of 250 arms
    # and costs more than the signatures themselves (1.4 ms a row, measured).
    table = CertificateRequest._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET certificate_id = %s WHERE id = %s",  # noqa: S608 - our table name
            [(cert.pk, req.pk) for req, cert, _ in issued],
        )
    StatusCount.objects.filter(status=Status.PENDING).update(count=F("count") - len(issued))
    StatusCount.objects.filter(status=Status.COMPLETE).update(count=F("count") + len(issued))
    AuditEvent.objects.bulk_create(
        _approval_audit(req, cert, agent=agent, ip=None, days=days, edited_sans=False)
        for req, cert, days in issued
    )
    for req, cert, _ in issued:
        signals.certificate_issued.send(
            sender=Certificate, certificate=cert, request=req, actor=agent
        )
    return certs


# --- CAs ----------------------------------------------------------------------------


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
    transaction.on_commit(ca_store.forget_default_ca)
    ca_store.forget_default_ca()
    audit(action, actor=actor, ca=ca, subject=ca.subject, **details)
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
    certs = pki.load_certificates(cert_data)
    cert, chain = certs[0], certs[1:]
    if chain_data:
        chain += pki.load_certificates(chain_data)
    chain = _issuer_order(cert, [c for c in chain if c != cert])
    key = pki.load_private_key(key_data, key_passphrase, what="the CA key")
    pki.check_ca(cert, key, chain)
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
# Imported here rather than at the top so that this section stays one block that the
# other sections' authors never have to merge with.


logger = logging.getLogger(__name__)

PKCS12_FORMATS = ("modern", "compatible")


class WrongPassphrase(InvalidRequest):
    """The passphrase does not open the stored key; nothing was written."""


class KeyNotAvailable(ServiceError):
    """No private key is stored for this request (never was, or erased); nothing was written."""


def offers_server_key(profile: str) -> bool:
    """True when requesters of this profile may let the portal make their key."""
    return profile in settings.SERVER_KEY_PROFILES


@dataclass(frozen=True)
class ServerKeyState:
    """What the requester is told about a key the portal made for them."""

    stored: bool  # still here and downloadable now
    deadline: dt.datetime | None  # erased at this time unless downloaded first
    erased_at: dt.datetime | None
    erased_because: str  # "", "downloaded", "expired", "request_rejected", "request_canceled"


def server_key_state(req: CertificateRequest) -> ServerKeyState | None:
    """The state of the request's server-made key; None if the requester made their own."""
    if not req.encrypted_private_key and req.key_erased_at is None:
        return None
    deadline = None
    if req.certificate_id is not None:
        deadline = req.certificate.created + dt.timedelta(days=settings.SERVER_KEY_RETENTION_DAYS)
    if req.encrypted_private_key:
        # Past its deadline the key is as good as gone, even before erase_expired_keys runs.
        expired = deadline is not None and deadline <= timezone.now()
        return ServerKeyState(
            stored=not expired,
            deadline=deadline,
            erased_at=None,
            erased_because="expired" if expired else "",
        )
    erased = req.audit_events.filter(action="private_key_erased").order_by("-time", "-pk").first()
    return ServerKeyState(
        stored=False,
        deadline=deadline,
        erased_at=req.key_erased_at,
        erased_because=erased.details.get("reason", "") if erased else "",
    )


@sensitive_variables()  # every frame below, e.g. atomic's **kwds, holds the passphrase
@transaction.atomic
def submit_request_with_server_key(
    *,
    profile: str,
    passphrase: str,
    requester_email: str,
    requester_name: str,
    note: str = "",
    ip: str | None = None,
    actor: User | None = None,
) -> CertificateRequest:
    """Make the key pair here, keep the private key sealed under the passphrase, and submit
    a CSR for it (CN = the requester's name)."""
    if not offers_server_key(profile):
        raise InvalidRequest(
            f"the {profile} profile does not offer keys made by the portal; submit a CSR",
            field="profile",
        )
    try:
        keygen.check_passphrase(passphrase)
    except pki.PKIError as exc:
        raise InvalidRequest(str(exc), field="passphrase") from None
    name = (requester_name or "").strip()
    if not name:
        raise InvalidRequest(
            "your name is required: the certificate names you by it", field="requester_name"
        )
    if any(ch in name for ch in "\r\n"):
        raise InvalidRequest("the name must be on one line", field="requester_name")
    key = pki.generate_private_key(settings.SERVER_KEY_TYPE)
    req = submit_request(
        profile=profile,
        csr=keygen.build_csr(key, name),
        requester_email=requester_email,
        requester_name=name,
        note=note,
        ip=ip,
        actor=actor,
    )
    req.encrypted_private_key = keygen.seal(key, passphrase)
    req.save(update_fields=["encrypted_private_key", "updated_at"])
    audit(
        "server_key_generated",
        actor=actor,
        actor_label="requester",
        request=req,
        ip=ip,
        key_type=pki.key_type_of(key),
    )
    return req


def _erase_server_key(
    req: CertificateRequest, *, reason: str, actor: User | None, ip: str | None
) -> None:
    req.encrypted_private_key = ""
    req.key_erased_at = timezone.now()
    req.save(update_fields=["encrypted_private_key", "key_erased_at", "updated_at"])
    audit(
        "private_key_erased",
        actor=actor,
        actor_label="requester" if reason == "downloaded" else "system",
        request=req,
        certificate=req.certificate,
        ip=ip,
        reason=reason,
    )


_GONE = {
    "downloaded": "Your private key was downloaded once already and then erased from this "
    "server, as promised. If you lost the .p12 file, submit a new request.",
    "expired": "Your private key was erased because nobody downloaded it within "
    "{days} days of issue. Submit a new request.",
}


def _not_available(req: CertificateRequest) -> KeyNotAvailable:
    state = server_key_state(req)
    if state is None:
        return KeyNotAvailable(
            "This certificate's private key was never stored here: it stays on the computer "
            "where the certificate signing request was made."
        )
    message = _GONE.get(state.erased_because, "Your private key has been erased from this server.")
    return KeyNotAvailable(message.format(days=settings.SERVER_KEY_RETENTION_DAYS))


@sensitive_variables()
def download_server_key(
    request_id: str | CertificateRequest,
    *,
    passphrase: str,
    pkcs12_format: str = "modern",
    ip: str | None = None,
    actor: User | None = None,
) -> bytes:
    """The PKCS#12 (key, certificate, chain) under the passphrase; the stored key is then
    erased, so this works once."""
    if pkcs12_format not in PKCS12_FORMATS:
        raise InvalidRequest(f"unknown PKCS#12 format {pkcs12_format!r}", field="pkcs12_format")
    outcome = _take_server_key(
        request_id, passphrase=passphrase, pkcs12_format=pkcs12_format, ip=ip, actor=actor
    )
    if isinstance(outcome, ServiceError):
        raise outcome  # only after the erasure of an expired key has been committed
    return outcome


@sensitive_variables()
@transaction.atomic
def _take_server_key(
    request_id, *, passphrase: str, pkcs12_format: str, ip: str | None, actor: User | None
) -> bytes | ServiceError:
    # Locked, so that two downloads at once cannot both get the key.
    req = _lock_request(request_id)
    if not req.encrypted_private_key:
        raise _not_available(req)
    if req.status != Status.COMPLETE or req.certificate is None:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status}: the key can be downloaded once the "
            "certificate is issued"
        )
    state = server_key_state(req)
    if state is not None and state.erased_because == "expired":
        _erase_server_key(req, reason="expired", actor=None, ip=ip)
        return _not_available(req)
    try:
        key = keygen.unseal(req.encrypted_private_key, passphrase)
    except keygen.WrongPassphrase:
        logger.info("wrong passphrase for the key of request %s from %s", req.display_id, ip)
        raise WrongPassphrase(
            "That passphrase does not open your key. Type the passphrase you chose when you "
            "submitted the request (capitals count).",
            field="passphrase",
        ) from None
    cert = req.certificate
    if not pki.same_public_key(key, cert.x509.public_key()):
        raise KeyNotAvailable("the stored key does not belong to this certificate")
    chain = [cert.ca.certificate, *cert.ca.chain]
    name = pki.common_name(cert.x509.subject) or cert.serial
    package = pki.to_pkcs12 if pkcs12_format == "modern" else keygen.to_pkcs12_compatible
    data = package(key, cert.x509, chain, passphrase, name=name)
    audit(
        "private_key_downloaded",
        actor=actor,
        actor_label="requester",
        request=req,
        certificate=cert,
        ip=ip,
        serial=cert.serial,
        pkcs12_format=pkcs12_format,
    )
    _erase_server_key(req, reason="downloaded", actor=actor, ip=ip)
    return data


def erase_expired_server_keys(*, now: dt.datetime | None = None) -> int:
    """Erase stored keys not downloaded within SERVER_KEY_RETENTION_DAYS of issue, and those
    of rejected or canceled requests; return how many were erased."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.SERVER_KEY_RETENTION_DAYS)
    due = (
        CertificateRequest.objects.exclude(encrypted_private_key="")
        .filter(
            Q(status=Status.COMPLETE, certificate__created__lte=cutoff)
            | Q(status__in=[Status.REJECTED, Status.CANCELED])
        )
        .values_list("pk", flat=True)
    )
    return sum(_erase_if_due(pk, cutoff) for pk in list(due))


@transaction.atomic
def _erase_if_due(pk: int, cutoff: dt.datetime) -> bool:
    req = CertificateRequest.objects.select_for_update().filter(pk=pk).first()
    if req is None or not req.encrypted_private_key:
        return False  # downloaded (or erased) since the list was read
    if req.status in (Status.REJECTED, Status.CANCELED):
        reason = f"request_{req.status}"
    elif req.status == Status.COMPLETE and req.certificate.created <= cutoff:
        reason = "expired"
    else:
        return False
    _erase_server_key(req, reason=reason, actor=None, ip=None)
    return True


# --- revocation (issue 7: revocation, CRL, OCSP) --------------------------------------
# Imported here, like the section above, so that this section stays one block (dt and
# settings come from the section above).

#: RFC 5280 reason names (x509.ReasonFlags values); every one is final but certificateHold.
REVOCATION_REASONS = tuple(
    flag.value for flag in x509.ReasonFlags if flag is not x509.ReasonFlags.remove_from_crl
)
CERTIFICATE_HOLD = x509.ReasonFlags.certificate_hold.value
REMOVE_FROM_CRL = x509.ReasonFlags.remove_from_crl.value


class CertificateNotFound(ServiceError):
    """No certificate has that serial number."""


class AlreadyRevoked(InvalidTransition):
    """The certificate is revoked already (for a final reason, or on hold again)."""


class NotOnHold(InvalidTransition):
    """Only a certificate on hold (certificateHold) can be released."""


def _lock_certificate(serial: str | Certificate) -> Certificate:
    """Lock the certificate row and read it again, so that concurrent revocations serialize."""
    if isinstance(serial, Certificate):
        rows = Certificate.objects.filter(pk=serial.pk)
        shown = serial.serial
    else:
        rows = Certificate.objects.filter(serial=normalize_serial(serial))
        shown = serial
    # of=self: lock the certificate only; the CA row is the CRL generator's lock.
    found = list(rows.select_for_update(of=("self",)).select_related("ca")[:2])
    if not found:
        raise CertificateNotFound(f"no certificate has the serial number {shown}", field="serial")
    if len(found) > 1:
        raise InvalidRequest(
            f"several CAs issued a certificate with the serial number {shown}", field="serial"
        )
    return found[0]


def _regenerate_crl_on_commit(ca_id: int) -> None:
    from . import tasks  # django.tasks is loaded only by code that enqueues

    transaction.on_commit(lambda: tasks.schedule_crl(ca_id))


@transaction.atomic
def revoke_certificate(
    serial: str | Certificate,
    *,
    reason: str,
    actor: User | None,
    invalidity_date: dt.datetime | None = None,
    ip: str | None = None,
) -> Certificate:
    """Revoke a certificate for an RFC 5280 reason; certificateHold alone can be released.

    A certificate on hold may be revoked for a final reason (as Dogtag allows); it keeps the
    revocation time of its hold, since it has been out of service from then on.
    """
    if reason not in REVOCATION_REASONS:
        raise InvalidRequest(
            f"{reason!r} is not a revocation reason; use one of {', '.join(REVOCATION_REASONS)}",
            field="reason",
        )
    now = pki.utcnow()
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            invalidity_date = invalidity_date.replace(tzinfo=dt.UTC)
        if invalidity_date > now:
            raise InvalidRequest(
                "the invalidity date cannot be in the future: it is when the key was (or is "
                "suspected to have been) compromised, or the certificate otherwise became invalid",
                field="invalidity_date",
            )
    cert = _lock_certificate(serial)
    previous = cert.revocation_reason if cert.status == Certificate.Status.REVOKED else ""
    if previous and (previous != CERTIFICATE_HOLD or reason == CERTIFICATE_HOLD):
        state = "on hold" if previous == CERTIFICATE_HOLD else f"revoked ({previous}, final)"
        raise AlreadyRevoked(
            f"certificate {cert.serial} is already {state} since "
            f"{cert.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    cert.status = Certificate.Status.REVOKED
    cert.revocation_reason = reason
    cert.revoked_at = cert.revoked_at if previous else now
    cert.invalidity_date = invalidity_date or (cert.invalidity_date if previous else None)
    cert.save(update_fields=["status", "revocation_reason", "revoked_at", "invalidity_date"])
    audit(
        "certificate_revoked",
        actor=actor,
        request=cert.issued_request,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        reason=reason,
        invalidity_date=cert.invalidity_date.isoformat() if cert.invalidity_date else None,
        previous_reason=previous or None,
    )
    signals.certificate_revoked.send(
        sender=Certificate, certificate=cert, reason=reason, actor=actor
    )
    _regenerate_crl_on_commit(cert.ca_id)
    return cert


@transaction.atomic
def release_hold(
    serial: str | Certificate, *, actor: User | None, ip: str | None = None
) -> Certificate:
    """Take a certificate off hold: it is valid again and leaves the CRL."""
    cert = _lock_certificate(serial)
    if cert.status != Certificate.Status.REVOKED or cert.revocation_reason != CERTIFICATE_HOLD:
        state = (
            f"revoked for {cert.revocation_reason}, which is final"
            if cert.status == Certificate.Status.REVOKED
            else cert.status
        )
        raise NotOnHold(f"certificate {cert.serial} is not on hold: it is {state}")
    held_since = cert.revoked_at
    cert.status = Certificate.Status.VALID
    cert.revocation_reason = ""
    cert.revoked_at = None
    cert.invalidity_date = None
    cert.save(update_fields=["status", "revocation_reason", "revoked_at", "invalidity_date"])
    audit(
        "certificate_hold_released",
        actor=actor,
        request=cert.issued_request,
        certificate=cert,
        ca=cert.ca,
        ip=ip,
        serial=cert.serial,
        held_since=held_since.isoformat() if held_since else None,
    )
    signals.certificate_revoked.send(
        sender=Certificate, certificate=cert, reason=REMOVE_FROM_CRL, actor=actor
    )
    _regenerate_crl_on_commit(cert.ca_id)
    return cert


def create_ocsp_responder(
    *, validity_days: int = 90, ca: CertificateAuthority | None = None, actor: User | None = None
):
    """Issue a delegated OCSP responder certificate for a CA (the default one) and store it
    with its key in CA_KEY_DIR; the responder signs with it from the next request on."""
    from . import ocsp, revocation

    if validity_days < 1 or validity_days > 3650:
        raise InvalidRequest("the validity must be between 1 and 3650 days", field="validity_days")
    try:
        ca = ca or ca_store.default_ca()
        key, cert = revocation.create_ocsp_responder(
            ca_cert=ca.certificate, ca_key=ca_store.load_key(ca), validity_days=validity_days
        )
        ocsp.store_responder(ca, key, cert)
    except pki.CAError as exc:
        raise CAUnavailable(f"cannot create the OCSP responder: {exc}") from None
    except OSError as exc:
        raise CAUnavailable(
            f"cannot write the OCSP responder files: {exc.strerror or exc}"
        ) from None
    audit(
        "ocsp_responder_created",
        actor=actor,
        ca=ca,
        serial=pki.serial_hex(cert.serial_number),
        not_after=cert.not_valid_after_utc.isoformat(),
    )
    return cert


# --- renewals (issue 8: the Dogtag end-entity protocol) -------------------------------


def submit_enrollment(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str = "",
    note: str = "",
    ip: str | None = None,
    channel: str = "web",
) -> tuple[CertificateRequest, Certificate | None]:
    """Submit a new CSR, and issue at once when its profile is auto_approve (never a renewal)."""
    req = submit_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        note=note,
        ip=ip,
        channel=channel,
    )
    if not profiles.get_profile(req.profile).auto_approve:
        return req, None
    try:
        return req, approve_request(req, agent=None, ip=ip)
    except CAUnavailable:
        # The request is already queued; an agent sees the CA problem when approving it.
        return req, None


MAX_SERIAL_CHARS = 80  # a 159-bit serial has 48 decimal digits


def _certificate_to_renew(certificate: str | int | Certificate) -> Certificate:
    """The certificate named by a decimal serial (or 0x hex, as Dogtag accepts), locked."""
    if isinstance(certificate, Certificate):
        serial = certificate.serial
    else:
        text = str(certificate).strip()
        try:
            if len(text) > MAX_SERIAL_CHARS:
                raise ValueError(text)
            number = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
            if number < 0:
                raise ValueError(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise InvalidRequest(
                f"{shown!r} is not a certificate serial number (decimal, or hex with 0x)",
                field="serial",
            ) from None
        serial = pki.serial_hex(number)
    # Locked so that two renewals of one certificate cannot both find no pending one.
    cert = (
        Certificate.objects.select_for_update()
        .filter(serial=serial)
        .order_by("-created", "-pk")
        .first()
    )
    if cert is None:
        raise InvalidRequest(
            f"no certificate with serial number {int(serial, 16)} (0x{serial}) was issued here",
            field="serial",
        )
    return cert


@transaction.atomic
def submit_renewal(
    certificate: str | int | Certificate,
    *,
    requester_email: str | None = None,
    ip: str | None = None,
    channel: str = "dogtag",
    actor: User | None = None,
) -> CertificateRequest:
    """Queue the renewal of an issued certificate: same profile, subject, SANs and key."""
    # Never issued without an agent, whatever the profile says: anyone can name a serial,
    # and an anonymous renewal by serial is Dogtag's CVE-2021-20179.
    cert = _certificate_to_renew(certificate)
    if cert.status == Certificate.Status.REVOKED:
        raise InvalidRequest(
            f"certificate 0x{cert.serial} is revoked, so it cannot be renewed; "
            "request a new certificate with a new key",
            field="serial",
        )
    # certmonger resubmits after every lost cookie; one waiting renewal per certificate.
    waiting = cert.renewals.filter(status=Status.PENDING).order_by("submitted_at", "pk").first()
    if waiting is not None:
        return waiting
    try:
        prof = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        raise InvalidRequest(
            f"certificate 0x{cert.serial} was issued under the profile {cert.profile!r}, "
            "which is no longer offered; request a new certificate",
            field="profile",
        ) from None
    key = cert.x509.public_key()
    try:
        pki.check_csr_key(key, allow_ed25519=prof.allow_ed25519)
    except pki.CSRError as exc:
        raise InvalidRequest(
            f"the key of certificate 0x{cert.serial} is no longer accepted: {exc}", field="serial"
        ) from None
    # Mail about the renewal goes to whoever asked for the original, not to a name given now.
    original = cert.issued_request
    email = original.requester_email if original else (requester_email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidRequest(
            f"{email!r} is not a valid email address", field="requester_email"
        ) from None
    req = CertificateRequest.objects.create(
        profile=prof.name,
        csr_pem="",
        subject=cert.subject,
        key_type=pki.key_type_of(key),
        key_size=pki.key_description(key)[1],
        public_key_sha256=pki.public_key_sha256(key),
        requested_sans=list(cert.sans),
        requester_name=original.requester_name if original else "",
        requester_email=email,
        submitter_ip=ip,
        renewal_of=cert,
        channel=channel,
    )
    _move_count(None, Status.PENDING)
    audit(
        "renewal_submitted",
        actor=actor,
        actor_label="requester",
        request=req,
        certificate=cert,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
        renewal_of=cert.serial,
    )
    signals.request_submitted.send(sender=CertificateRequest, request=req, actor=actor)
    return req
