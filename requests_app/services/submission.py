"""Requests enter the queue: from the end-entity pages, the Dogtag protocol and commands."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from .. import pki, profiles, signals
from ..models import Certificate, CertificateRequest
from ..validators import validate_recipient_email
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
        validate_recipient_email(requester_email)  # the forms' and delivery's check
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
