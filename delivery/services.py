"""Every state change of the outbox: queue, claim, send, retry, track.

A Delivery is written in the transaction of the change that causes it and its task is
enqueued on commit. `deliver` claims a row by compare-and-swap, so whichever worker or
task runs it, each claim sends at most once; a crashed worker's lease expires and the
row is claimed again.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from requests_app import profiles
from requests_app.models import Certificate, CertificateRequest
from requests_app.services import ServiceError, audit
from requests_app.validators import validate_recipient_email

from .backends import DeliveryError, DeliveryHeld, get_backend
from .models import Delivery
from .resilience import retry_database

logger = logging.getLogger(__name__)
Status = Delivery.Status
Kind = Delivery.Kind

#: The backend alias that sends each manual method and each notification.
MANUAL_METHODS = {"certificate": "email_certificate", "link": "email_link"}
NOTIFY_BACKEND = "notify"


class DeliveryRefused(ServiceError):
    """A delivery cannot be queued or retried; nothing was written."""


# --- settings -----------------------------------------------------------------------


def lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)


def backoff(attempts: int) -> dt.timedelta:
    """Delay before the next try: first within a minute, doubling up to the maximum."""
    seconds = settings.DELIVERY_RETRY_FIRST_SECONDS * 2 ** max(attempts - 1, 0)
    return dt.timedelta(seconds=min(seconds, settings.DELIVERY_RETRY_MAX_SECONDS))


def automatic_backends(profile_name: str) -> list[str]:
    """The backends that run on approval for a profile (DELIVERY_POLICY, else the profile's)."""
    if not settings.DELIVERY_AUTOMATIC:
        return []
    policy = settings.DELIVERY_POLICY
    if policy is not None and profile_name in policy:
        return list(policy[profile_name])
    try:
        return list(profiles.get_profile(profile_name).auto_delivery)
    except profiles.ProfileError:
        return []


def agent_addresses() -> list[str]:
    """AGENT_NOTIFY_EMAIL if set, else every active agent with an email address."""
    if settings.AGENT_NOTIFY_EMAIL:
        return list(settings.AGENT_NOTIFY_EMAIL)
    agents = get_user_model().objects.filter(
        Q(groups__permissions__codename="approve_certificaterequest") | Q(is_superuser=True),
        is_active=True,
    )
    return sorted({email for email in agents.values_list("email", flat=True) if email})


# --- queueing -----------------------------------------------------------------------


def clean_recipient(recipient: str, *, url: bool = False) -> str:
    """An email address (or a URL for webhooks), refusing anything that could inject headers."""
    recipient = (recipient or "").strip()
    if any(ch in recipient for ch in "\r\n\0,;"):
        raise DeliveryRefused(f"{recipient!r} is not a single valid recipient", field="to")
    try:
        # An address: the same validator as the enrollment forms, so none they take is refused.
        (URLValidator(schemes=["http", "https"]) if url else validate_recipient_email)(recipient)
    except ValidationError:
        what = "URL" if url else "email address"
        raise DeliveryRefused(f"{recipient!r} is not a valid {what}", field="to") from None
    return recipient


def resolve_delivery(
    *,
    request: CertificateRequest,
    kind: str | None,
    backend: str,
    recipient: str | None = None,
    certificate: Certificate | None = None,
) -> tuple[str, str]:
    """The kind and checked recipient of a delivery by backend, or why it cannot be queued.

    kind None: the backend's own kind for an issued certificate, a link if it sends links;
    recipient None: the backend's default recipient."""
    plugin = get_backend(backend)
    if kind is None:
        kind = Kind.LINK if Kind.LINK in plugin.kinds else plugin.kinds[0]
    if kind not in plugin.kinds:
        raise DeliveryRefused(f"backend {backend!r} cannot send {kind!r}")
    if recipient is None:
        recipient = plugin.default_recipient(request, certificate)
    return kind, clean_recipient(recipient, url=recipient.startswith(("http://", "https://")))


def queue_delivery(
    *,
    request: CertificateRequest,
    kind: str | None,
    backend: str,
    recipient: str | None = None,
    certificate: Certificate | None = None,
    note: str = "",
    actor=None,
) -> Delivery:
    """Write one Delivery row (in the caller's transaction) and enqueue it on commit;
    kind and recipient as resolve_delivery takes them."""
    kind, recipient = resolve_delivery(
        request=request, kind=kind, backend=backend, recipient=recipient, certificate=certificate
    )
    delivery = Delivery.objects.create(
        request=request,
        certificate=certificate,
        backend=backend,
        kind=kind,
        recipient=recipient,
        note=(note or "").strip(),
        requested_by=actor,
        next_attempt_at=timezone.now(),
    )
    audit(
        "delivery_queued",
        actor=actor,
        request=request,
        certificate=certificate,
        delivery=delivery.pk,
        kind=kind,
        backend=backend,
        recipient=recipient,
    )
    transaction.on_commit(lambda: enqueue(delivery.pk))
    return delivery


def record_unqueued_delivery(
    *,
    request: CertificateRequest,
    kind: str,
    backend: str,
    error: str,
    recipient: str = "",
    certificate: Certificate | None = None,
    actor=None,
) -> Delivery | None:
    """A delivery that could not be queued, written as a failed row with the reason, in a
    savepoint; None (and a log line) when even that cannot be written."""
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                request=request,
                certificate=certificate,
                backend=backend[:64],
                kind=kind,
                recipient=recipient[:500],
                status=Status.FAILED,
                last_error=error[:2000],
                requested_by=actor,
            )
            audit(
                "delivery_failed",
                actor=actor,
                request=request,
                certificate=certificate,
                delivery=delivery.pk,
                kind=kind,
                backend=backend,
                error=error[:500],
                attempt=0,
            )
    except Exception:
        logger.exception(
            "could not record the failed %s delivery by %r for request %s either: %s",
            kind,
            backend,
            request.pk,
            error,
        )
        return None
    return delivery


def enqueue(delivery_id: int, *, run_after: dt.datetime | None = None) -> None:
    """Hand a delivery to the task backend (deferred when the backend supports it)."""
    from .tasks import deliver_task

    task = deliver_task
    if run_after is not None:
        if not task.get_backend().supports_defer:
            return  # retry_deliveries (cron / make run) picks it up when due
        task = task.using(run_after=run_after)
    try:
        task.enqueue(delivery_id)
    except Exception:
        # The row is the source of truth: retry_deliveries finds it again.
        logger.exception("could not enqueue delivery %s; the sweeper will", delivery_id)


@transaction.atomic
def send_certificate(
    serial: str | Certificate,
    *,
    method: str,
    to: str | None = None,
    note: str = "",
    actor=None,
) -> Delivery:
    """An agent sends a certificate (attached, or as a retrieval link) by hand."""
    if method not in MANUAL_METHODS:
        raise DeliveryRefused(f"unknown method {method!r}; use certificate or link", field="method")
    if isinstance(serial, Certificate):
        cert = serial
    else:
        cert = Certificate.objects.by_serial(serial)
        if cert is None:
            raise DeliveryRefused(f"no certificate has the serial number {serial}", field="serial")
    request = cert.issued_request
    if request is None:
        raise DeliveryRefused(f"certificate {cert.serial} has no request to deliver to")
    return queue_delivery(
        request=request,
        certificate=cert,
        kind=method,
        backend=MANUAL_METHODS[method],
        recipient=to or request.requester_email,
        note=note,
        actor=actor,
    )


def retry_delivery(delivery_id: int, *, actor=None) -> Delivery:
    """Send a pending, failed or bounced delivery now ("Send now", "Retry"): due at once,
    its backoff and attempts started afresh, enqueued on commit. Refused for a row that is
    sent, or that a worker holds right now. The row changes only if nobody changed it since
    we read it (compare-and-swap), so a double click changes and audits it once, and
    claim() sends it once."""
    seen = Delivery.objects.select_related("request", "certificate").filter(pk=delivery_id)
    seen = seen.first()
    if seen is None:
        raise DeliveryRefused("no such delivery")
    now = timezone.now()
    _refuse_send_now(seen, now)
    # Pending and due already (the other click of a double click): nothing to change.
    due = seen.status == Status.PENDING and seen.next_attempt_at and seen.next_attempt_at <= now
    with transaction.atomic():
        unchanged = Delivery.objects.filter(
            pk=seen.pk,
            status=seen.status,
            attempts=seen.attempts,
            next_attempt_at=seen.next_attempt_at,
            lease_until=seen.lease_until,
            updated=seen.updated,
        )
        if not due and unchanged.update(
            status=Status.PENDING, attempts=0, next_attempt_at=now, lease_until=None, updated=now
        ):
            audit(
                "delivery_retry_requested",
                actor=actor,
                request=seen.request,
                certificate=seen.certificate,
                delivery=seen.pk,
                was=seen.status,
                attempts=seen.attempts,
            )
    # Enqueued even when another click changed the row, in case its task was lost:
    # claim() lets only one of them send.
    transaction.on_commit(lambda: enqueue(seen.pk))
    return seen


def _refuse_send_now(delivery: Delivery, now: dt.datetime) -> None:
    if delivery.status == Status.SENDING and delivery.lease_until and delivery.lease_until >= now:
        raise DeliveryRefused(
            f"delivery {delivery.public_id} is being sent right now; its result shows in a moment"
        )
    if delivery.status not in (Status.FAILED, Status.BOUNCED, Status.PENDING, Status.SENDING):
        raise DeliveryRefused(
            f"delivery {delivery.public_id} is {delivery.status} already; to mail it again, "
            "use Email certificate or Email retrieval link"
        )
    if not delivery.recipient:
        raise DeliveryRefused(
            f"delivery {delivery.public_id} has no recipient (it could not be queued); "
            "send the certificate by hand instead"
        )


# --- sending ------------------------------------------------------------------------


def claim(delivery_id: int, *, now: dt.datetime | None = None) -> bool:
    """Compare-and-swap: a due pending row, or one whose lease expired, becomes ours."""
    now = now or timezone.now()
    due = Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Status.SENDING, lease_until__lt=now
    )
    return (
        Delivery.objects.filter(due, pk=delivery_id).update(
            status=Status.SENDING,
            lease_until=now + lease(),
            attempts=F("attempts") + 1,
            updated=now,
        )
        == 1
    )


def deliver(delivery_id: int) -> str:
    """Claim, send and record one delivery; returns its status afterwards."""
    claimed_at = timezone.now()
    if not claim(delivery_id, now=claimed_at):
        return "not-claimed"
    delivery = Delivery.objects.select_related("request", "certificate__ca").get(pk=delivery_id)
    try:
        result = get_backend(delivery.backend).send(delivery)
    except DeliveryHeld as exc:
        return _record_hold(delivery, exc)
    except DeliveryError as exc:
        return _record_failure(
            delivery, exc.message, permanent=exc.permanent, claimed_at=claimed_at
        )
    except Exception as exc:  # a bug or bad configuration must not leave the row "sending"
        logger.exception("delivery %s: unexpected error", delivery_id)
        return _record_failure(
            delivery, f"{type(exc).__name__}: {exc}", permanent=False, claimed_at=claimed_at
        )
    # The message is out. Record it through a locked or dropped database for as long as our
    # lease holds: once it expires another worker may claim the row and send it again.
    retry_database(
        f"delivery {delivery.public_id}: recording it sent",
        lambda: _record_sent(delivery, result),
        seconds=_lease_left(claimed_at),
    )
    return Status.SENT


def _record_hold(delivery: Delivery, held: DeliveryHeld) -> str:
    """Back to pending until held.until, with the claim's attempt given back: a held
    delivery has not failed, and waits as long as it must without running out of tries."""
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
            status=Status.PENDING,
            attempts=F("attempts") - 1,
            last_error=held.message[:2000],
            next_attempt_at=held.until,
            lease_until=None,
            updated=timezone.now(),
        )
        audit(
            "delivery_held",
            actor=None,
            request=delivery.request,
            certificate=delivery.certificate,
            delivery=delivery.pk,
            reason=held.message[:500],
            until=held.until.isoformat(),
        )
    enqueue(delivery.pk, run_after=held.until)
    return Status.PENDING


def _lease_left(claimed_at: dt.datetime) -> float:
    """Seconds of our lease on a row claimed at claimed_at, less a margin for the write."""
    left = (claimed_at + lease() - timezone.now()).total_seconds()
    return max(0.0, left * 0.9)


@transaction.atomic
def _record_sent(delivery: Delivery, result) -> None:
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.SENT,
        sent_at=now,
        lease_until=None,
        last_error="",
        message_id=result.message_id[:255],
        updated=now,
    )
    audit(
        "delivery_sent",
        actor=None,
        request=delivery.request,
        certificate=delivery.certificate,
        delivery=delivery.pk,
        kind=delivery.kind,
        recipient=delivery.recipient,
        attempt=delivery.attempts,
    )


def _record_failure(
    delivery: Delivery, error: str, *, permanent: bool, claimed_at: dt.datetime
) -> str:
    now = timezone.now()
    final = permanent or delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS
    status = Status.FAILED if final else Status.PENDING
    next_attempt = None if final else now + backoff(delivery.attempts)

    @transaction.atomic
    def write():
        Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
            status=status,
            last_error=error[:2000],
            next_attempt_at=next_attempt,
            lease_until=None,
            updated=now,
        )
        audit(
            "delivery_failed" if final else "delivery_retry_scheduled",
            actor=None,
            request=delivery.request,
            certificate=delivery.certificate,
            delivery=delivery.pk,
            error=error[:500],
            attempt=delivery.attempts,
            next_attempt=next_attempt.isoformat() if next_attempt else None,
        )

    retry_database(
        f"delivery {delivery.public_id}: recording a failure",
        write,
        seconds=_lease_left(claimed_at),
    )
    if not final:
        enqueue(delivery.pk, run_after=next_attempt)
    logger.warning("delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, error)
    return status


def due_delivery_ids(*, now: dt.datetime | None = None, everything: bool = False) -> list[int]:
    """Pending rows that are due (all pending rows with everything=True) and expired leases.
    With everything=True the pending rows are made due now."""
    now = now or timezone.now()
    if everything:
        Delivery.objects.filter(status=Status.PENDING, next_attempt_at__gt=now).update(
            next_attempt_at=now
        )
    due = Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Status.SENDING, lease_until__lt=now
    )
    return list(
        Delivery.objects.filter(due).order_by("next_attempt_at", "pk").values_list("pk", flat=True)
    )


# --- reviving failed deliveries ----------------------------------------------------


@transaction.atomic
def revive_failed_deliveries(*, actor=None) -> list[Delivery]:
    """Put every failed delivery that has a recipient back in the queue, due now, with a
    fresh budget of attempts (after an outage longer than the backoff schedule); one audit
    row per delivery. Their tasks are enqueued on commit."""
    now = timezone.now()
    revived = list(
        Delivery.objects.select_for_update(of=("self",))
        .filter(status=Status.FAILED)
        .exclude(recipient="")
        .select_related("request", "certificate")
        .order_by("pk")
    )
    for delivery in revived:
        Delivery.objects.filter(pk=delivery.pk, status=Status.FAILED).update(
            status=Status.PENDING,
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            updated=now,
        )
        audit(
            "delivery_revived",
            actor=actor,
            request=delivery.request,
            certificate=delivery.certificate,
            delivery=delivery.pk,
            public_id=delivery.public_id,
            attempts=delivery.attempts,
            last_error=delivery.last_error[:500],
        )
    ids = [delivery.pk for delivery in revived]
    transaction.on_commit(lambda: [enqueue(delivery_id) for delivery_id in ids])
    return revived
