"""Sending the outbox in batches: one statement claims up to DELIVERY_BATCH_SIZE due rows,
each is sent over the worker's kept mail connection, and the results are written in one
transaction (one UPDATE for the sent rows, one chained INSERT for their audit rows).

The guarantees are those of one row at a time: a row is sent only by the worker whose
claim took it (compare-and-swap on status and lease), a crashed worker's lease expires and
`retry_deliveries` finds the row again, a failure is retried with backoff per row (one
refused recipient does not fail the others), and a held row gives its attempt back.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from requests_app.models import AuditEvent

from . import errors
from .backends import DeliveryError, DeliveryHeld, get_backend
from .models import Delivery
from .resilience import retry_database
from .services import backoff, enqueue, lease

logger = logging.getLogger("delivery.services")
Status = Delivery.Status
NOT_CLAIMED = "not-claimed"
#: A batch that takes longer (a slow mail server) records what it sent this often.
RECORD_EVERY_SECONDS = 1.0


def batch_size() -> int:
    return max(1, settings.DELIVERY_BATCH_SIZE)


# --- the claim ------------------------------------------------------------------------------


def claim_batch(
    ids: list[int] | None = None,
    *,
    limit: int | None = None,
    fill: bool = False,
    now: dt.datetime | None = None,
) -> list[int]:
    """Take up to limit due rows (pending and due, or with an expired lease) in one
    statement, and return their ids: the named ids first, then (fill=True or ids None) the
    longest-waiting other due rows. On PostgreSQL the rows are chosen FOR UPDATE SKIP
    LOCKED, so concurrent claims never take one row twice and never wait for each other;
    SQLite runs the single UPDATE under its database write lock."""
    now = now or timezone.now()
    limit = limit or batch_size()
    if ids is not None and not ids:
        return []
    ops = connection.ops
    table = ops.quote_name(Delivery._meta.db_table)
    at = ops.adapt_datetimefield_value
    due = "((status = %s AND next_attempt_at <= %s) OR (status = %s AND lease_until < %s))"
    due_params = [Status.PENDING, at(now), Status.SENDING, at(now)]
    named, named_params, order, order_params = "", [], "next_attempt_at, id", []
    if ids:
        marks = ", ".join(["%s"] * len(ids))
        if fill:
            order = f"CASE WHEN id IN ({marks}) THEN 0 ELSE 1 END, {order}"
            order_params = list(ids)
        else:
            named, named_params = f" AND id IN ({marks})", list(ids)
    skip_locked = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    sql = (
        f"UPDATE {table} SET status = %s, lease_until = %s, attempts = attempts + 1, "  # noqa: S608 - our table
        f"updated = %s WHERE id IN (SELECT id FROM {table} WHERE {due}{named} "
        f"ORDER BY {order} LIMIT %s{skip_locked}) RETURNING id"
    )
    params = [Status.SENDING, at(now + lease()), at(now), *due_params]
    params += [*named_params, *order_params, limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        claimed = [row[0] for row in cursor.fetchall()]
    # RETURNING gives no order: the named rows first, as named, then the others by id.
    position = {pk: i for i, pk in enumerate(ids or ())}
    return sorted(claimed, key=lambda pk: (position.get(pk, len(position)), pk))


# --- sending a batch ------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What happened to each claimed row of a batch, recorded together afterwards."""

    sent: list[tuple[Delivery, str]] = field(default_factory=list)
    held: list[tuple[Delivery, DeliveryHeld]] = field(default_factory=list)
    #: (delivery, the agent's text, permanent, the raw cause for experts)
    failed: list[tuple[Delivery, str, bool, str]] = field(default_factory=list)
    unsent: list[Delivery] = field(default_factory=list)

    def status(self) -> dict[int, str]:
        """The status each claimed row has once these outcomes are recorded."""
        statuses = {d.pk: Status.SENT for d, _ in self.sent}
        statuses |= {d.pk: Status.PENDING for d, _ in self.held}
        statuses |= {d.pk: Status.PENDING for d in self.unsent}
        for delivery, _, permanent, _ in self.failed:
            statuses[delivery.pk] = Status.FAILED if _final(delivery, permanent) else Status.PENDING
        return statuses


def deliver_batch(
    ids: list[int] | None = None, *, fill: bool = False, limit: int | None = None
) -> dict[int, str]:
    """Claim a batch (claim_batch), send each row and record them all; {id: status} for
    every row of the batch. A named id that was not claimed is absent."""
    claimed_at = timezone.now()
    claimed = claim_batch(ids, limit=limit, fill=fill, now=claimed_at)
    if not claimed:
        return {}
    deliveries = Delivery.objects.select_related("request", "certificate__ca").in_bulk(claimed)
    outcomes, statuses = Outcomes(), {}
    recorded = time.monotonic()
    # Send in the order claimed; stop sending when half the lease is gone (a slow server),
    # and give the rest back, so that no row is sent after its lease could have expired.
    deadline = claimed_at + lease() / 2
    for delivery_id in claimed:
        delivery = deliveries[delivery_id]
        if timezone.now() >= deadline:
            outcomes.unsent.append(delivery)
            continue
        _send_one(delivery, outcomes)
        if time.monotonic() - recorded >= RECORD_EVERY_SECONDS:
            # A slow server: what is out is recorded now, so that a worker that dies later
            # in the batch leaves at most this long of sent messages to be sent again.
            statuses |= _flush(outcomes, claimed_at, claimed)
            outcomes, recorded = Outcomes(), time.monotonic()
    return statuses | _flush(outcomes, claimed_at, claimed)


def _flush(outcomes: Outcomes, claimed_at: dt.datetime, claimed: list[int]) -> dict[int, str]:
    """Record outcomes, enqueue the rows that wait, and return their statuses."""
    if not (outcomes.sent or outcomes.held or outcomes.failed or outcomes.unsent):
        return {}
    # The messages are out. Record them through a locked or dropped database for as long as
    # our lease holds: once it expires another worker may claim the rows and send them again.
    retry_database(
        f"deliveries {claimed[0]}..{claimed[-1]}: recording a batch of {len(claimed)}",
        lambda: _record(outcomes),
        seconds=_lease_left(claimed_at),
    )
    _enqueue_retries(outcomes)
    return outcomes.status()


def _send_one(delivery: Delivery, outcomes: Outcomes) -> None:
    try:
        result = get_backend(delivery.backend).send(delivery)
    except DeliveryHeld as exc:
        outcomes.held.append((delivery, exc))
    except DeliveryError as exc:
        outcomes.failed.append((delivery, exc.message, exc.permanent, exc.detail))
    except Exception as exc:  # a bug or bad configuration must not leave the row "sending"
        logger.exception("delivery %s: unexpected error", delivery.pk)
        detail = f"{type(exc).__name__}: {exc}"
        outcomes.failed.append((delivery, errors.unexpected_error(exc), False, detail))
    else:
        outcomes.sent.append((delivery, result.message_id[:255]))


def _lease_left(claimed_at: dt.datetime) -> float:
    """Seconds of our lease on rows claimed at claimed_at, less a margin for the write."""
    left = (claimed_at + lease() - timezone.now()).total_seconds()
    return max(0.0, left * 0.9)


def _final(delivery: Delivery, permanent: bool) -> bool:
    return permanent or delivery.attempts >= settings.DELIVERY_MAX_ATTEMPTS


def _audit(action: str, delivery: Delivery, **details) -> AuditEvent:
    return AuditEvent(
        actor=None,
        actor_label="system",
        action=action,
        request=delivery.request,
        certificate=delivery.certificate,
        details={"delivery": delivery.pk, **details},
    )


# --- recording a batch ----------------------------------------------------------------------


@transaction.atomic
def _record(outcomes: Outcomes) -> None:
    """Every outcome of a batch in one transaction: one UPDATE for the sent rows, one for
    the rows given back unsent, one per failed or held row (each has its own schedule),
    and one chained INSERT of all their audit rows."""
    now = timezone.now()
    mine = Delivery.objects.filter(status=Status.SENDING)
    events = []
    if outcomes.sent:
        # Providers name each message; SMTP gives no ID (all blank, no CASE needed).
        named = [When(pk=d.pk, then=Value(mid)) for d, mid in outcomes.sent if mid]
        mine.filter(pk__in=[d.pk for d, _ in outcomes.sent]).update(
            status=Status.SENT,
            sent_at=now,
            lease_until=None,
            last_error="",
            message_id=Case(*named, default=Value("")) if named else "",
            updated=now,
        )
        events += [
            _audit(
                "delivery_sent",
                d,
                kind=d.kind,
                recipient=d.recipient,
                attempt=d.attempts,
            )
            for d, _ in outcomes.sent
        ]
    if outcomes.unsent:
        # Not tried: the attempt is given back and the row is due again at once.
        mine.filter(pk__in=[d.pk for d in outcomes.unsent]).update(
            status=Status.PENDING,
            attempts=F("attempts") - 1,
            next_attempt_at=now,
            lease_until=None,
            updated=now,
        )
    for delivery, held in outcomes.held:
        # A held delivery has not failed: it waits, its attempt given back, until held.until.
        mine.filter(pk=delivery.pk).update(
            status=Status.PENDING,
            attempts=F("attempts") - 1,
            last_error=held.message[:2000],
            next_attempt_at=held.until,
            lease_until=None,
            updated=now,
        )
        events.append(
            _audit(
                "delivery_held", delivery, reason=held.message[:500], until=held.until.isoformat()
            )
        )
    for delivery, error, permanent, detail in outcomes.failed:
        final = _final(delivery, permanent)
        next_attempt = None if final else now + backoff(delivery.attempts)
        delivery.next_attempt_at = next_attempt
        mine.filter(pk=delivery.pk).update(
            status=Status.FAILED if final else Status.PENDING,
            last_error=error[:2000],
            next_attempt_at=next_attempt,
            lease_until=None,
            updated=now,
        )
        events.append(
            _audit(
                "delivery_failed" if final else "delivery_retry_scheduled",
                delivery,
                error=error[:500],
                # The raw cause (server reply, exception) for experts; agents read `error`.
                **({"detail": detail[:1000]} if detail else {}),
                attempt=delivery.attempts,
                next_attempt=next_attempt.isoformat() if next_attempt else None,
            )
        )
        logger.warning(
            "delivery %s attempt %s failed: %s %s", delivery.pk, delivery.attempts, error, detail
        )
    if events:
        AuditEvent.objects.bulk_create(events)


def _enqueue_retries(outcomes: Outcomes) -> None:
    """Tasks for the rows that wait (deferred where the task backend can; else the sweeper)."""
    for delivery, held in outcomes.held:
        enqueue(delivery.pk, run_after=held.until)
    for delivery, *_ in outcomes.failed:
        if delivery.next_attempt_at is not None:
            enqueue(delivery.pk, run_after=delivery.next_attempt_at)
    for delivery in outcomes.unsent:
        enqueue(delivery.pk)
