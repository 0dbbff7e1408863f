"""Requests enter the queue: from the end-entity pages, the Dogtag protocol and commands."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import pki, profiles, signals, throttle
from ..models import Certificate, CertificateRequest
from ..validators import validate_recipient_email
from .agent_certificates import AGENT_PROFILE, is_active_agent
from .audit_log import audit
from .decisions import approve_request
from .errors import CAUnavailable, InvalidRequest, LintFailed
from .issuance import lint_refusal_audit
from .records import move_count

Status = CertificateRequest.Status
User = AbstractBaseUser

#: Channels through which anybody may submit, so the per-recipient mail limit applies.
PUBLIC_CHANNELS = ("web", "dogtag", "rest")


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
    agent_for: User | None = None,
    email_confirmed_by: str = "",
) -> CertificateRequest:
    """Check a CSR against a profile and put a pending request in the queue; for a profile
    with confirm_email, the request awaits the requester's confirmation of the address
    instead, unless email_confirmed_by names the administrator who vouches for it. agent_for:
    an agent's own agent certificate (see request_agent_certificate), whose address is the
    one an administrator gave the agent's account, so it needs no mailed proof."""
    req, dropped = _build_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        note=note,
        extra_hostnames=list(extra_hostnames),
        ip=ip,
        channel=channel,
    )
    vouched = email_confirmed_by.strip()[:150]
    if agent_for is not None and not vouched:
        vouched = f"account of agent {agent_for.get_username()}"[:150]
    if channel in PUBLIC_CHANNELS and not throttle.enrollment_mail_allowed(req.requester_email):
        raise InvalidRequest(
            f"We have sent as many messages to {req.requester_email} today as we send to one "
            "address in a day, so we cannot take another request for it now. Try again "
            "tomorrow.",
            field="requester_email",
        )
    awaiting = profiles.get_profile(req.profile).confirm_email and not vouched
    if awaiting:
        req.status = Status.AWAITING_EMAIL
    elif vouched:
        req.email_confirmed_at = timezone.now()
        req.email_confirmed_by = vouched
    req.agent_for = agent_for
    req.save()
    move_count(None, req.status)
    extra = {"email_confirmation": "awaiting"} if awaiting else {}
    if vouched:
        extra = {"email_confirmed_by": vouched}
    if agent_for is not None:
        extra["agent_for"] = agent_for.get_username()
    audit(
        "request_submitted",
        actor=actor,
        actor_label="administrator" if vouched and agent_for is None else "requester",
        request=req,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
        dropped=dropped,
        **extra,
    )
    if awaiting:
        signals.email_confirmation_requested.send(
            sender=CertificateRequest, request=req, actor=actor
        )
    else:
        signals.request_submitted.send(sender=CertificateRequest, request=req, actor=actor)
    return req


#: The states in which a request still waits for a decision: one per key and profile.
WAITING = (Status.PENDING, Status.AWAITING_EMAIL)


def _refuse_duplicate(prof: profiles.Profile, public_key_sha256: str) -> None:
    """A second waiting request for the same key and profile would only double the agents'
    work (and the mail): name the one that waits instead."""
    waiting = (
        CertificateRequest.objects.filter(
            public_key_sha256=public_key_sha256, profile=prof.name, status__in=WAITING
        )
        .order_by("submitted_at", "pk")
        .first()
    )
    if waiting is not None:
        raise InvalidRequest(
            f"A request for this key and the {prof.name} profile is already waiting: "
            f"{waiting.display_id}. Check its status with that ID instead of submitting "
            "again.",
            field="csr",
        )


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
) -> tuple[CertificateRequest, list[str]]:
    """The unsaved request, and what the profile dropped from the CSR."""
    try:
        prof = profiles.get_profile(profile)
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field="profile") from None
    requester_email = (requester_email or "").strip()
    try:
        validate_recipient_email(requester_email)  # the forms' and delivery's check
    except ValidationError:
        raise InvalidRequest(
            f"{requester_email!r} is not a valid email address", field="requester_email"
        ) from None
    if any(ch in requester_name for ch in "\r\n"):
        raise InvalidRequest("the name must be on one line", field="requester_name")
    try:
        pki.check_characters(requester_name, what="name")
    except pki.InvalidName as exc:
        raise InvalidRequest(str(exc), field="requester_name") from None
    try:
        info = pki.check_csr(csr, allow_ed25519=prof.allow_ed25519)
        subject = profiles.issued_subject(prof, info.csr.subject, requester_email=requester_email)
        sans = profiles.requested_sans(
            prof,
            csr_sans=info.sans,
            subject_cn=subject.get("CN"),
            extra_hostnames=extra_hostnames,
            requester_email=requester_email,
        )
    except pki.CSRError as exc:
        raise InvalidRequest(str(exc), field="csr") from None
    except profiles.ProfileError as exc:
        raise InvalidRequest(str(exc), field=exc.field or "csr") from None
    _refuse_duplicate(prof, info.public_key_sha256)
    dropped = profiles.dropped_from(
        prof, info.csr.subject, info.sans, requester_email=requester_email
    )
    req = CertificateRequest(
        profile=prof.name,
        csr_pem=info.pem,
        subject=subject.text,
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
    return req, dropped


def agent_requester(user: User) -> tuple[str, str]:
    """The requester email and name of an agent asking for their own agent certificate."""
    if not is_active_agent(user):
        raise InvalidRequest("only an active agent may request an agent certificate for themself")
    if not user.email:
        raise InvalidRequest(
            "your account has no email address; an administrator must add one first",
            field="requester_email",
        )
    return user.email, (user.get_full_name() or user.get_username())


@transaction.atomic
def request_agent_certificate(
    *, user: User, csr: str | bytes, note: str = "", ip: str | None = None
) -> CertificateRequest:
    """An agent asks for their own agent certificate with a CSR: it enters the queue marked
    as theirs, for another agent to approve; on approval it is linked to them."""
    email, name = agent_requester(user)
    return submit_request(
        profile=AGENT_PROFILE,
        csr=csr,
        requester_email=email,
        requester_name=name,
        note=note,
        ip=ip,
        actor=user,
        channel="agent",
        agent_for=user,
    )


def issue_certificate(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str = "",
    extra_hostnames: Iterable[str] = (),
    validity_days: int | None = None,
    actor: User | None = None,
    email_confirmed_by: str = "administrator (issue_certificate)",
) -> Certificate:
    """Submit and approve in one step (for administrators, who vouch for the address).

    One transaction; when pre-issuance linting refuses the certificate (LintFailed), it is
    rolled back whole (no request, no certificate) and the refusal's audit row is written
    in a second one, so that the refusal is on record."""
    options = {
        "profile": profile,
        "csr": csr,
        "requester_email": requester_email,
        "requester_name": requester_name,
        "extra_hostnames": extra_hostnames,
        "validity_days": validity_days,
        "actor": actor,
        "email_confirmed_by": email_confirmed_by,
    }
    try:
        return _issue_certificate(**options)
    except LintFailed as exc:
        with transaction.atomic():
            lint_refusal_audit(exc, req=None, agent=actor, ip=None, profile=profile).save(
                force_insert=True
            )
        raise


@transaction.atomic
def _issue_certificate(
    *,
    profile: str,
    csr: str | bytes,
    requester_email: str,
    requester_name: str,
    extra_hostnames: Iterable[str],
    validity_days: int | None,
    actor: User | None,
    email_confirmed_by: str,
) -> Certificate:
    req = submit_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        extra_hostnames=extra_hostnames,
        actor=actor,
        channel="command",
        email_confirmed_by=email_confirmed_by,
    )
    return approve_request(req, agent=actor, validity_days=validity_days)


@transaction.atomic
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
    """Submit a new CSR, and issue at once when its profile is auto_approve (never a renewal;
    for a profile with confirm_email, once the address is confirmed)."""
    req = submit_request(
        profile=profile,
        csr=csr,
        requester_email=requester_email,
        requester_name=requester_name,
        note=note,
        ip=ip,
        channel=channel,
    )
    if req.awaits_email or not profiles.get_profile(req.profile).auto_approve:
        return req, None
    try:
        with transaction.atomic():  # a savepoint: a refused approval leaves the request queued
            return req, approve_request(req, agent=None, ip=ip)
    except LintFailed as exc:
        # approve_request's own record of the refusal went with the savepoint: write it here.
        lint_refusal_audit(exc, req=req, agent=None, ip=ip).save(force_insert=True)
        return req, None
    except CAUnavailable:
        # The request stays in the queue; an agent sees the CA problem (or the pre-issuance
        # linting's refusal, a CAUnavailable too, on record in the audit log) when approving it.
        return req, None
