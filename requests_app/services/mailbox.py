"""Proof of the mailbox (the S/MIME Baseline Requirements' mailbox validation): a request of
a profile with confirm_email waits until its requester types the code mailed to the
address, or opens the mailed link; only then does it reach the agents.

The code is random (80 bits), exists only in the mail, and is stored as a hash bound to its
request; it is single use (consumed in the transaction that queues the request), compared
in constant time, and expires with the request (EMAIL_CONFIRMATION_DAYS after submission).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from .. import profiles, signals
from ..models import (
    PUBLIC_ID_ALPHABET,
    CertificateRequest,
    EmailConfirmation,
    format_public_id,
    normalize_public_id,
)
from .audit_log import audit
from .decisions import approve_request
from .errors import CAUnavailable, InvalidRequest, InvalidTransition
from .records import lock_request, move_count
from .renewals import approve_renewal_if_allowed, refuse_second_pending_renewal

Status = CertificateRequest.Status
User = AbstractBaseUser

CODE_LENGTH = 16  # Crockford base32: 80 random bits, typed as four groups of four

#: How a confirmation arrived: the link in the mail, or the code typed on the page.
VIA = {"link": "the requester (mailed link)", "code": "the requester (mailed code)"}


class WrongCode(InvalidRequest):
    """The code does not belong to the request; nothing was written."""


def _hash(public_id: str, code: str) -> str:
    # Bound to the request: a code mailed for one request confirms no other.
    return hashlib.sha256(f"{public_id}:{code}".encode()).hexdigest()


def format_code(code: str) -> str:
    """A code as mailed and typed: XXXX-XXXX-XXXX-XXXX."""
    return format_public_id(code)


@transaction.atomic
def issue_email_confirmation_code(request_id: str | CertificateRequest) -> str:
    """A new confirmation code for a request that awaits one, for the mail being built.

    Made when the mail is sent, never before, so that the code exists nowhere else: a
    delivery that is retried mails a new code, and any unused one confirms. The audit row
    records that a code was made (not the code); there is no signal, as delivery, which
    asked for it, is the only party."""
    req = lock_request(request_id)
    if not req.awaits_email:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status_text}; it needs no confirmation"
        )
    deadline = req.confirm_email_deadline()
    if deadline <= timezone.now():
        raise InvalidTransition(f"request {req.display_id} was not confirmed in time")
    code = "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(CODE_LENGTH))
    EmailConfirmation.objects.create(
        request=req, code_hash=_hash(req.public_id, code), expires_at=deadline
    )
    audit("email_confirmation_code_issued", actor=None, request=req, email=req.requester_email)
    return code


@transaction.atomic
def confirm_email(
    request_id: str | CertificateRequest, code: str, *, via: str = "code", ip: str | None = None
) -> CertificateRequest:
    """The requester proves the mailbox with a mailed code: the request enters the agent
    queue (pending), and the agents are told now, not before."""
    if via not in VIA:
        raise ValueError(f"unknown confirmation path {via!r}")
    req = lock_request(request_id)
    typed = normalize_public_id(code or "")[: CODE_LENGTH * 2]
    wanted = _hash(req.public_id, typed)
    match = None
    # Every code of the request compared in full, in constant time, whatever matches.
    for row in req.email_confirmations.all():
        if hmac.compare_digest(row.code_hash, wanted):
            match = row
    if match is None or len(typed) != CODE_LENGTH:
        raise WrongCode(
            "That code is not the one we mailed for this request. Copy it from the most "
            "recent message, or open the link in it.",
            field="code",
        )
    now = timezone.now()
    if match.used_at is not None or req.email_confirmed_at is not None:
        raise InvalidTransition(
            f"This code was used already: the address of request {req.display_id} was "
            f"confirmed on {req.email_confirmed_at or match.used_at:%Y-%m-%d %H:%M} UTC."
        )
    if match.expires_at <= now or req.confirm_email_deadline() <= now:
        raise InvalidTransition(
            "This code has expired: a request's address must be confirmed within "
            f"{settings.EMAIL_CONFIRMATION_DAYS} days of submitting it. Submit a new request."
        )
    if not req.awaits_email:
        raise InvalidTransition(
            f"Request {req.display_id} is {req.status_text}, so it cannot be confirmed any more."
        )
    refuse_second_pending_renewal(req)
    match.used_at = now
    match.save(update_fields=["used_at"])
    req.status = Status.PENDING
    req.email_confirmed_at = now
    req.email_confirmed_by = VIA[via]
    req.save(update_fields=["status", "email_confirmed_at", "email_confirmed_by", "updated_at"])
    move_count(Status.AWAITING_EMAIL, Status.PENDING)
    audit(
        "email_confirmed",
        actor=None,
        actor_label="requester",
        request=req,
        ip=ip,
        email=req.requester_email,
        via=via,
    )
    signals.request_submitted.send(sender=CertificateRequest, request=req, actor=None)
    _approve_if_automatic(req, ip=ip)
    return req


def _approve_if_automatic(req: CertificateRequest, *, ip: str | None) -> None:
    """An auto_approve profile issues once the address is proved (never a renewal: a
    renewal only by its profile's same-key rule)."""
    if req.renewal_of_id is not None:
        approve_renewal_if_allowed(req, ip=ip)
        return
    try:
        automatic = profiles.get_profile(req.profile).auto_approve
    except profiles.ProfileError:
        return
    if not automatic or req.renewal_of_id is not None:
        return
    try:
        with transaction.atomic():  # a savepoint: a refused approval leaves the request queued
            approve_request(req, agent=None, ip=ip)
    except CAUnavailable:
        pass  # it waits in the queue; an agent sees the CA problem when approving it


def expire_unconfirmed_requests(*, now: dt.datetime | None = None, days: int | None = None) -> int:
    """Cancel the requests whose address was not confirmed within EMAIL_CONFIRMATION_DAYS of
    submission; return how many.

    One transaction per request, like erase_expired_server_keys: each locks one row, so a
    cron run never holds a requester's confirmation waiting behind thousands of others."""
    days = settings.EMAIL_CONFIRMATION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    due = CertificateRequest.objects.filter(
        status=Status.AWAITING_EMAIL, submitted_at__lte=cutoff
    ).values_list("pk", flat=True)
    return sum(_expire_if_due(pk, cutoff, days) for pk in list(due))


@transaction.atomic
def _expire_if_due(pk: int, cutoff: dt.datetime, days: int) -> bool:
    req = CertificateRequest.objects.select_for_update().filter(pk=pk).first()
    if req is None or not req.awaits_email or req.submitted_at > cutoff:
        return False  # confirmed (or expired) since the list was read
    req.status = Status.CANCELED
    req.agent_note = f"The email address was not confirmed within {days} days."
    req.save(update_fields=["status", "agent_note", "updated_at"])
    move_count(Status.AWAITING_EMAIL, Status.CANCELED)
    audit("request_expired", actor=None, request=req, email=req.requester_email, days=days)
    signals.request_expired.send(sender=CertificateRequest, request=req)
    return True
