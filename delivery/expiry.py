"""Mail before certificates expire: reminders to their holders, a daily digest to agents.

`send_expiry_reminders` (the command of that name, from cron at any frequency, several at
once) queues each reminder that is due through the outbox, and sends the agents' digest
once a UTC day. Both claim their work with a unique row before doing it, so two runs at
the same moment split the work between them and nothing is sent twice:

- a reminder: ExpiryReminder (certificate, days) is inserted in the transaction that
  queues the Delivery and its audit rows; a second run's insert fails and it skips;
- a digest: ExpiryDigest (day, recipient) is inserted once, then claimed by compare-and-
  swap for each try, as the outbox claims a Delivery.

Which certificates are due is requests_app.expiry's selection; what is mailed is the
"expiry_reminder" notification (templates/delivery/email/expiry_reminder*) and
templates/delivery/email/expiry_digest*.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, mailers
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from requests_app import expiry, profiles
from requests_app.models import Certificate
from requests_app.services import ServiceError, audit

from . import services
from .backends import get_backend
from .models import Delivery, ExpiryDigest, ExpiryReminder

logger = logging.getLogger(__name__)
DigestStatus = ExpiryDigest.Status

#: Certificates named in one digest mail; the rest are counted and linked.
DIGEST_MAX_ROWS = 200


@dataclass(frozen=True)
class ExpiryMailResult:
    #: Reminders this run queued (each one Delivery), by threshold in days.
    reminders: dict[int, int]
    #: Digests this run sent, and tries that failed (retried by a later run).
    digests_sent: int
    digests_failed: int

    @property
    def reminders_queued(self) -> int:
        return sum(self.reminders.values())


def reminder_thresholds() -> list[int]:
    """EXPIRY_REMINDER_DAYS, largest first as a person reads them (30, 7, 1)."""
    return sorted({int(d) for d in settings.EXPIRY_REMINDER_DAYS}, reverse=True)


def send_expiry_reminders(*, now: dt.datetime | None = None) -> ExpiryMailResult:
    """Queue every reminder due at `now` and send the agents' digest of now's UTC day.

    One transaction per reminder and per digest, on purpose: each commits its own claim,
    so a second run at the same time skips what the first one holds, and a failure costs
    one reminder, not the run."""
    now = now or timezone.now()
    if not settings.DELIVERY_NOTIFICATIONS:
        return ExpiryMailResult(reminders={}, digests_sent=0, digests_failed=0)
    reminders: dict[int, int] = {}
    for days, rows in expiry.reminder_windows(now=now, thresholds=reminder_thresholds()):
        reminded = ExpiryReminder.objects.filter(certificate=OuterRef("pk"), days=days)
        # The IDs first (index-only), then one short transaction each: a run never holds
        # a cursor open across the commits of its reminders.
        due = list(rows.filter(~Exists(reminded)).values_list("pk", flat=True))
        for cert_id in due:
            if queue_expiry_reminder(cert_id, days=days, now=now) is not None:
                reminders[days] = reminders.get(days, 0) + 1
    sent, failed = send_expiry_digests(now=now)
    return ExpiryMailResult(reminders=reminders, digests_sent=sent, digests_failed=failed)


def reminder_recipient(certificate: Certificate) -> str:
    """The requester's address, or the profile's fallback (DOGTAG_REQUESTER_EMAIL for
    profiles of servers, where certmonger often sends none)."""
    request = certificate.issued_request
    email = request.requester_email if request else ""
    if not email:
        try:
            if profiles.get_profile(certificate.profile).takes_hostnames:
                email = settings.DOGTAG_REQUESTER_EMAIL
        except profiles.ProfileError:
            pass
    return email


@transaction.atomic
def queue_expiry_reminder(cert_id: int, *, days: int, now: dt.datetime) -> Delivery | None:
    """Queue the `days`-day reminder of one certificate, unless it was queued already or
    the certificate no longer needs one (revoked, renewed, expired, no request); the
    Delivery, or None when nothing was queued."""
    # Locked and read again: a revocation or a renewal's issuance may have happened since
    # the selection, and they lock the certificate too.
    cert = (
        Certificate.objects.select_for_update(of=("self",))
        .select_related("request", "ca")
        .filter(pk=cert_id)
        .first()
    )
    if (
        cert is None
        or cert.status != Certificate.Status.VALID
        or cert.not_after <= now
        or cert.issued_request is None
        or expiry.is_renewed(cert)
    ):
        return None
    try:
        with transaction.atomic():
            reminder = ExpiryReminder.objects.create(certificate=cert, days=days)
    except IntegrityError:
        return None  # another run queued it (or is queuing it) first
    request = cert.issued_request
    recipient = reminder_recipient(cert)
    try:
        with transaction.atomic():
            delivery = services.queue_delivery(
                request=request,
                certificate=cert,
                kind=Delivery.Kind.EXPIRY_REMINDER,
                backend=services.NOTIFY_BACKEND,
                recipient=recipient,
            )
    except ServiceError as exc:
        # Kept as a failed delivery with the reason, for the agents to see; the reminder
        # row stays, so that the next run does not try again every few minutes.
        delivery = services.record_unqueued_delivery(
            request=request,
            certificate=cert,
            kind=Delivery.Kind.EXPIRY_REMINDER,
            backend=services.NOTIFY_BACKEND,
            recipient="",
            error=f"not queued: {exc.message}",
        )
    ExpiryReminder.objects.filter(pk=reminder.pk).update(delivery=delivery)
    audit(
        "expiry_reminder_queued",
        actor=None,
        request=request,
        certificate=cert,
        days=days,
        not_after=cert.not_after.isoformat(),
        recipient=recipient,
        delivery=delivery.pk if delivery else None,
    )
    return delivery


# --- the agents' digest -------------------------------------------------------------


def digest_rows(*, now: dt.datetime):
    """What the digest lists: certificates expiring within EXPIRY_DIGEST_DAYS that nobody
    renewed, soonest first."""
    return expiry.expiring(now=now, within_days=settings.EXPIRY_DIGEST_DAYS)


def send_expiry_digests(*, now: dt.datetime) -> tuple[int, int]:
    """Make today's digest rows (one per agent address, once a day, only when something
    expires) and send those that are due; (sent, failed) by this run."""
    if settings.EXPIRY_DIGEST_DAYS < 1:
        return 0, 0
    day = now.astimezone(dt.UTC).date()
    if digest_rows(now=now).exists():
        for recipient in services.agent_addresses():
            _add_digest(day, recipient)
    sent = failed = 0
    for digest_id in _due_digests(day):
        outcome = send_digest(digest_id, now=now)
        sent += outcome == DigestStatus.SENT
        failed += outcome in (DigestStatus.PENDING, DigestStatus.FAILED)
    return sent, failed


def _add_digest(day: dt.date, recipient: str) -> None:
    """Insert-or-skip: the unique (day, recipient) pair makes one digest a day."""
    try:
        with transaction.atomic():
            ExpiryDigest.objects.create(
                day=day, recipient=recipient[:254], next_attempt_at=timezone.now()
            )
    except IntegrityError:
        pass  # this day's digest to that address exists already


def _due(now: dt.datetime) -> Q:
    return Q(status=DigestStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=DigestStatus.SENDING, lease_until__lt=now
    )


def _due_digests(day: dt.date) -> list[int]:
    rows = ExpiryDigest.objects.filter(_due(timezone.now()), day=day)
    return list(rows.order_by("pk").values_list("pk", flat=True))


def claim_digest(digest_id: int) -> bool:
    """Compare-and-swap, as the outbox claims a Delivery: a due row becomes this run's."""
    now = timezone.now()
    return (
        ExpiryDigest.objects.filter(_due(now), pk=digest_id).update(
            status=DigestStatus.SENDING,
            lease_until=now + services.lease(),
            attempts=F("attempts") + 1,
        )
        == 1
    )


def send_digest(digest_id: int, *, now: dt.datetime) -> str:
    """Claim, build, send and record one digest; its status afterwards ("not-claimed" when
    another run has it)."""
    if not claim_digest(digest_id):
        return "not-claimed"
    digest = ExpiryDigest.objects.get(pk=digest_id)
    rows = list(digest_rows(now=now)[: DIGEST_MAX_ROWS + 1])
    try:
        message = build_digest(digest, rows[:DIGEST_MAX_ROWS], more=len(rows) > DIGEST_MAX_ROWS)
        alias = get_backend(services.NOTIFY_BACKEND).options["mailer"]
        mailers[alias].send_messages([message])
    except Exception as exc:  # a mail server down, a bad configuration: retried, with a limit
        logger.warning("expiry digest %s to %s failed: %s", digest.day, digest.recipient, exc)
        return _record_digest_failure(digest, f"{type(exc).__name__}: {exc}")
    _record_digest_sent(digest, listed=len(rows))
    return DigestStatus.SENT


def build_digest(digest: ExpiryDigest, rows: list[Certificate], *, more: bool) -> EmailMessage:
    site = settings.SITE_URL
    for cert in rows:
        request = cert.issued_request
        cert.renewal_method = expiry.RenewalMethod.LABELS[
            expiry.renewal_method(request.channel if request else None)
        ]
        cert.agent_url = f"{site}{reverse('agent:certificate', args=[cert.serial])}"
    context = {
        "digest": digest,
        "certificates": rows,
        "more": more,
        "days": settings.EXPIRY_DIGEST_DAYS,
        "expiring_url": f"{site}{reverse('agent:expiring')}?within=30",
        "site_url": site,
    }
    subject = " ".join(
        render_to_string("delivery/email/expiry_digest_subject.txt", context).split()
    )
    from_email = (
        get_backend(services.NOTIFY_BACKEND).options.get("from_email")
        or settings.DEFAULT_FROM_EMAIL
    )
    return EmailMessage(
        subject=subject,
        body=render_to_string("delivery/email/expiry_digest.txt", context),
        from_email=from_email,
        to=[digest.recipient],
    )


@transaction.atomic
def _record_digest_sent(digest: ExpiryDigest, *, listed: int) -> None:
    now = timezone.now()
    ExpiryDigest.objects.filter(pk=digest.pk, status=DigestStatus.SENDING).update(
        status=DigestStatus.SENT, sent_at=now, lease_until=None, last_error="", certificates=listed
    )
    audit(
        "expiry_digest_sent",
        actor=None,
        day=digest.day.isoformat(),
        recipient=digest.recipient,
        certificates=listed,
        attempt=digest.attempts,
    )


@transaction.atomic
def _record_digest_failure(digest: ExpiryDigest, error: str) -> str:
    final = digest.attempts >= settings.DELIVERY_MAX_ATTEMPTS
    status = DigestStatus.FAILED if final else DigestStatus.PENDING
    next_attempt = None if final else timezone.now() + services.backoff(digest.attempts)
    ExpiryDigest.objects.filter(pk=digest.pk, status=DigestStatus.SENDING).update(
        status=status, last_error=error[:2000], next_attempt_at=next_attempt, lease_until=None
    )
    audit(
        "expiry_digest_failed" if final else "expiry_digest_retry_scheduled",
        actor=None,
        day=digest.day.isoformat(),
        recipient=digest.recipient,
        error=error[:500],
        attempt=digest.attempts,
    )
    return status
