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
from django.db import router, transaction
from django.db.models import F, Q
from django.utils import timezone

from requests_app import pki, profiles
from requests_app.models import Certificate, CertificateRequest
from requests_app.services import ServiceError, audit
from requests_app.validators import validate_recipient_email

from .backends import get_backend
from .models import Delivery

logger = logging.getLogger(__name__)
Status = Delivery.Status
Kind = Delivery.Kind

#: The backend alias that sends each manual method and each notification.
MANUAL_METHODS = {"certificate": "email_certificate", "link": "email_link"}
NOTIFY_BACKEND = "notify"
#: The backend that sends the "your certificate is ready" mail (a retrieval link).
READY_BACKEND = "email_link"


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


def needs_ready_mail(request: CertificateRequest, certificate, aliases: list[str]) -> bool:
    """Whether the requester gets the "your certificate is ready" link mail on approval:
    they gave an address, and none of the automatic backends already mails them the
    certificate or a link (one mail, not two). ACME clients collect their certificates
    themselves and get none."""
    if not (settings.DELIVERY_AUTOMATIC and settings.DELIVERY_READY_MAIL):
        return False
    if not request.requester_email or request.channel == "acme":
        return False
    if READY_BACKEND in aliases:  # queued already (or recorded as failed): not twice
        return False
    return not any(_mails_requester(alias, request, certificate) for alias in aliases)


def _mails_requester(alias: str, request: CertificateRequest, certificate) -> bool:
    """Whether the backend sends the certificate or a link to the requester's address."""
    try:
        plugin = get_backend(alias)
        recipient = plugin.default_recipient(request, certificate)
    except Exception:  # a broken alias mails nobody; the receiver records why
        return False
    sends = {Kind.CERTIFICATE, Kind.LINK} & set(plugin.kinds)
    return bool(sends) and (recipient or "").lower() == request.requester_email.lower()


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
    _enqueue_with_transaction(delivery.pk)
    return delivery


def _enqueue_with_transaction(delivery_id: int) -> None:
    """Enqueue a delivery with the caller's transaction. A task backend that keeps its
    tasks in this database (django-tasks-db) gets the task row as one more INSERT in it:
    it commits or rolls back with the Delivery row, and costs no transaction of its own
    after the commit. Any other backend (ImmediateBackend runs the task at once) is
    handed the delivery on commit."""
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    from .tasks import deliver_task

    backend = deliver_task.get_backend()
    if isinstance(backend, DatabaseBackend) and router.db_for_write(
        DBTaskResult
    ) == router.db_for_write(Delivery):
        deliver_task.enqueue(delivery_id)  # an error here is the caller's (a failed row)
    else:
        transaction.on_commit(lambda: enqueue(delivery_id))


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
        try:
            pki.parse_serial(serial)
            cert = Certificate.objects.by_serial(serial)
        except pki.SerialError as exc:  # not a serial, or digits that name two
            raise DeliveryRefused(str(exc), field="serial") from None
        if cert is None:
            raise DeliveryRefused(f"no certificate has the serial number {serial}", field="serial")
    request = cert.issued_request
    if request is None:
        raise DeliveryRefused(f"certificate {cert.serial_colons} has no request to deliver to")
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
    """Claim, send and record one delivery; returns its status afterwards ("not-claimed"
    when it is not due, or another worker has it, or it is done)."""
    from .sending import NOT_CLAIMED, deliver_batch

    return deliver_batch([delivery_id]).get(delivery_id, NOT_CLAIMED)


def deliver_many(delivery_ids: list[int], *, fill: bool = False) -> dict[int, str]:
    """Send these deliveries in batches of DELIVERY_BATCH_SIZE (each batch topped up with
    other due rows when fill); {id: status} for every row sent or tried, the named ones
    that were not claimed absent."""
    from .sending import batch_size, deliver_batch

    statuses: dict[int, str] = {}
    size = batch_size()
    for start in range(0, len(delivery_ids), size):
        chunk = [i for i in delivery_ids[start : start + size] if i not in statuses]
        statuses |= deliver_batch(chunk, fill=fill)
    return statuses


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
