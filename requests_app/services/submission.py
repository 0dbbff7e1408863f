"""Requests enter the queue: from the end-entity pages, the Dogtag protocol and commands."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from .. import pki, profiles, signals
from ..models import Certificate, CertificateRequest
from .audit_log import audit
from .decisions import approve_request
from .errors import CAUnavailable, InvalidRequest
from .records import move_count

Status = CertificateRequest.Status
User = AbstractBaseUser


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
    req.save()
    move_count(None, Status.PENDING)
    audit(
        "request_submitted",
        actor=actor,
        actor_label="requester",
        request=req,
        ip=ip,
        profile=req.profile,
        subject=req.subject,
        sans=req.requested_sans,
        dropped=dropped,
    )
    signals.request_submitted.send(sender=CertificateRequest, request=req, actor=actor)
    return req


#: The states in which a request still waits for a decision: one per key and profile.
WAITING = (Status.PENDING,)


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
        with transaction.atomic():  # a savepoint: a refused approval leaves the request queued
            return req, approve_request(req, agent=None, ip=ip)
    except CAUnavailable:
        # The request stays in the queue; an agent sees the CA problem when approving it.
        return req, None
