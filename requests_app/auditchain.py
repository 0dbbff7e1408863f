"""The audit log's hash chain: every AuditEvent carries its place in the chain (`seq`), the
hash of its predecessor (`prev_hash`) and the SHA-256 of its own contents with that link
(`hash`); signed checkpoints (HMAC-SHA256 under AUDIT_HMAC_KEY) pin the chain at intervals.

Concurrency: a row gets its seq and predecessor while its transaction holds the lock on the
one AuditChainHead row, taken just before the insert and held until commit. Two transactions
writing audit rows at once therefore take turns for that tail of their work (the signing and
everything before the audit row runs in parallel): the chain cannot fork, a rolled-back
transaction leaves no gap (its head update rolls back with it), and ids follow seq, because
each id is drawn under the lock. On SQLite the write lock already serialises writers.

Anyone can recompute the hashes; only a holder of the key can sign a checkpoint or the head,
so rewriting the chain past a checkpoint, or cutting its tail, needs the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_ID = 1
#: The columns a row's hash covers (with seq and prev_hash); never change them: existing
#: rows were hashed with these.
HASHED_FIELDS = (
    "time",
    "actor_id",
    "actor_label",
    "action",
    "request_id",
    "certificate_id",
    "ca_id",
    "details",
    "ip",
)


def _canonical_time(value: dt.datetime) -> str:
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_ip(value) -> str | None:
    if not value:
        return None
    import ipaddress

    return str(ipaddress.ip_address(str(value)))


def row_digest(row, *, seq: int, prev_hash: str) -> str:
    """SHA-256 (hex) of a row's contents and its link: what `hash` must hold."""
    content = {name: getattr(row, name) for name in HASHED_FIELDS}
    content["time"] = _canonical_time(content["time"])
    content["ip"] = _canonical_ip(content["ip"])
    content["details"] = content["details"] if content["details"] is not None else {}
    content["seq"] = seq
    content["prev"] = prev_hash
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def hmac_key() -> bytes:
    """AUDIT_HMAC_KEY, or a key derived from SECRET_KEY when that is not set."""
    configured = getattr(settings, "AUDIT_HMAC_KEY", "")
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"ca-portal audit checkpoint", "sha256").digest()


def sign(*parts) -> str:
    """HMAC-SHA256 (hex) over the parts, joined by '|'."""
    message = "|".join(str(part) for part in parts).encode()
    return hmac.new(hmac_key(), message, hashlib.sha256).hexdigest()


def head_mac(seq: int, hash_: str) -> str:
    return sign("head", seq, hash_)


def checkpoint_mac(seq: int, hash_: str, created: dt.datetime) -> str:
    return sign("checkpoint", seq, hash_, _canonical_time(created))


def _normalise_details(event) -> None:
    # Hash what the database will give back: JSON round-trips tuples to lists, keys to str.
    field = type(event)._meta.get_field("details")
    event.details = json.loads(json.dumps(event.details or {}, cls=field.encoder))


@dataclass
class _Head:
    seq: int
    hash: str
    checkpoint_seq: int
    checkpoint_at: dt.datetime | None


def _table(model_name: str) -> str:
    from . import models

    return getattr(models, model_name)._meta.db_table


def locked_head_query(connection, *, also: str = "") -> str:
    """The SELECT that reads the chain head and locks it until commit; `also`: more
    expressions to compute in the same round trip (the approval's fixed statements).
    Its parameter is HEAD_ID."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table = connection.ops.quote_name(_table("AuditChainHead"))
    extra = f", {also}" if also else ""
    columns = f"seq, hash, checkpoint_seq, checkpoint_at{extra}"
    return f"SELECT {columns} FROM {table} WHERE id = %s{lock}"  # noqa: S608 - our table


def create_head(using: str) -> None:
    """A fresh (or flushed) database: the first writer makes the head; a racing one
    inserts nothing and then waits for the lock like everyone else."""
    from .models import AuditChainHead

    AuditChainHead.objects.using(using).bulk_create(
        [AuditChainHead(pk=HEAD_ID, seq=0, hash=GENESIS, mac=head_mac(0, GENESIS))],
        ignore_conflicts=True,
    )


def _locked_head(using: str) -> _Head:
    """Read the chain head, locking it until commit. Raw SQL: this runs in every audited
    transaction, and the ORM's statement building costs more than the statement."""
    connection = connections[using]
    query = locked_head_query(connection)
    with connection.cursor() as cursor:
        cursor.execute(query, [HEAD_ID])
        row = cursor.fetchone()
        if row is None:
            create_head(using)
            cursor.execute(query, [HEAD_ID])
            row = cursor.fetchone()
    return head_from_row(row)


def head_from_row(row) -> _Head:
    """The head from the first four columns locked_head_query returns."""
    seq, hash_, checkpoint_seq, checkpoint_at = row[:4]
    if isinstance(checkpoint_at, str):
        checkpoint_at = parse_datetime(checkpoint_at)
    if isinstance(checkpoint_at, dt.datetime) and timezone.is_naive(checkpoint_at):
        checkpoint_at = timezone.make_aware(checkpoint_at, dt.UTC)
    return _Head(seq, hash_, checkpoint_seq, checkpoint_at)


def head_update(head: _Head, *, using: str, checkpoint: bool) -> tuple[str, list]:
    """The UPDATE that moves the head to `head` (and its checkpoint, when one was written),
    as SQL and parameters, for a caller that runs it with other statements."""
    connection = connections[using]
    table = connection.ops.quote_name(_table("AuditChainHead"))
    columns, values = (
        ["seq = %s", "hash = %s", "mac = %s"],
        [
            head.seq,
            head.hash,
            head_mac(head.seq, head.hash),
        ],
    )
    if checkpoint:
        columns += ["checkpoint_seq = %s", "checkpoint_at = %s"]
        values += [
            head.checkpoint_seq,
            connection.ops.adapt_datetimefield_value(head.checkpoint_at),
        ]
    sql = f"UPDATE {table} SET {', '.join(columns)} WHERE id = %s"  # noqa: S608 - our table
    return sql, [*values, HEAD_ID]


def _save_head(head: _Head, *, using: str, checkpoint: bool) -> None:
    sql, params = head_update(head, using=using, checkpoint=checkpoint)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)


def chain(events: list, *, using: str) -> None:
    """Give unsaved events their place in the chain, under the head's lock, and move the
    head (and write a checkpoint when one is due). Call inside the transaction that
    inserts them, right before the insert."""
    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("audit rows are chained inside the transaction that inserts them")
    head = _locked_head(using)
    checkpoint = link(events, head, using=using)
    _save_head(head, using=using, checkpoint=checkpoint)


def link(events: list, head: _Head, *, using: str) -> bool:
    """Chain unsaved events after `head`, which the caller has read with
    locked_head_query in this transaction, and move `head` past them (in memory; the
    caller writes it with head_update). Writes a checkpoint row when one is due and says
    whether it did. Call right before the events are inserted, in that transaction."""
    if not transaction.get_connection(using).in_atomic_block:
        raise RuntimeError("audit rows are chained inside the transaction that inserts them")
    now = timezone.now()
    seq, previous = head.seq, head.hash
    for event in events:
        if event.seq is not None:
            raise ValueError("this audit row is already chained")
        _normalise_details(event)
        event.time = now
        seq += 1
        event.seq = seq
        event.prev_hash = previous
        event.hash = previous = row_digest(event, seq=seq, prev_hash=previous)
    head.seq, head.hash = seq, previous
    checkpoint = _checkpoint_due(head, now)
    if checkpoint:
        _write_checkpoint(head, now, using=using)
    return checkpoint


def _checkpoint_due(head, now: dt.datetime) -> bool:
    every = settings.AUDIT_CHECKPOINT_ROWS
    interval = dt.timedelta(seconds=settings.AUDIT_CHECKPOINT_SECONDS)
    if head.seq - head.checkpoint_seq >= every:
        return True
    return head.checkpoint_at is None or now - head.checkpoint_at >= interval


def _write_checkpoint(head, now: dt.datetime, *, using: str):
    from .models import AuditCheckpoint

    checkpoint = AuditCheckpoint(
        seq=head.seq, hash=head.hash, created=now, mac=checkpoint_mac(head.seq, head.hash, now)
    )
    checkpoint.save(using=using, force_insert=True)
    head.checkpoint_seq, head.checkpoint_at = head.seq, now
    # The log line is the copy that leaves this database (ship it off the host).
    logger.info(
        "audit checkpoint seq=%s hash=%s mac=%s", checkpoint.seq, checkpoint.hash, checkpoint.mac
    )
    return checkpoint


def checkpoint_now(*, using: str = "default"):
    """Sign a checkpoint at the current head (inside the caller's transaction)."""
    from .models import AuditCheckpoint

    head = _locked_head(using)
    if head.checkpoint_seq == head.seq:  # the last row already wrote one
        existing = AuditCheckpoint.objects.using(using).filter(seq=head.seq).first()
        if existing is not None:
            return existing
    checkpoint = _write_checkpoint(head, timezone.now(), using=using)
    _save_head(head, using=using, checkpoint=True)
    return checkpoint


# --- verification --------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something wrong in the chain, at a row (or at the head, or a checkpoint)."""

    position: float  # the seq where it shows (inf for the end), to find the first one
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    rows: int
    checkpoints: int
    problems: list[Problem]

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.position) if self.problems else None


def _where(row) -> str:
    return f"audit row id={row.pk} (seq {row.seq}, {row.action!r} at {row.time:%Y-%m-%d %H:%M:%S})"


def verify(*, using: str = "default", chunk_size: int = 2000) -> Report:
    """Walk the chain in seq order and report every break: an edited row (its hash), a
    deleted one (a gap), an inserted one (unchained, or a link that does not hold), rows
    reordered (ids against seq, or times in the hash), the head and the checkpoints."""
    from .models import AuditChainHead, AuditCheckpoint, AuditEvent

    problems: list[Problem] = []
    events = AuditEvent.objects.using(using)
    for row in events.filter(seq__isnull=True).order_by("id")[:20]:
        problems.append(
            Problem(0, f"audit row id={row.pk}", "not in the chain (inserted outside the log)")
        )
    checkpoints = {c.seq: c for c in AuditCheckpoint.objects.using(using).order_by("seq")}
    for checkpoint in checkpoints.values():
        if not hmac.compare_digest(
            checkpoint.mac, checkpoint_mac(checkpoint.seq, checkpoint.hash, checkpoint.created)
        ):
            problems.append(
                Problem(
                    checkpoint.seq,
                    f"checkpoint at seq {checkpoint.seq}",
                    "its signature does not match (forged, or AUDIT_HMAC_KEY changed)",
                )
            )
    expected, previous, previous_row, count = 1, GENESIS, None, 0
    for row in events.filter(seq__isnull=False).order_by("seq").iterator(chunk_size=chunk_size):
        count += 1
        where = _where(row)
        if row.seq != expected:
            if row.seq > expected:
                gap = (
                    f"seq {expected}"
                    if row.seq == expected + 1
                    else f"seq {expected}-{row.seq - 1}"
                )
                problems.append(
                    Problem(row.seq, where, f"the row(s) before it ({gap}) are missing (deleted)")
                )
            else:
                problems.append(Problem(row.seq, where, "its seq repeats (inserted)"))
        if row_digest(row, seq=row.seq, prev_hash=row.prev_hash) != row.hash:
            problems.append(Problem(row.seq, where, "its contents do not match its hash (edited)"))
        elif row.prev_hash != previous and row.seq == expected:
            problems.append(
                Problem(
                    row.seq, where, "it does not link to the row before it (inserted or replaced)"
                )
            )
        if previous_row is not None and row.pk <= previous_row.pk:
            problems.append(
                Problem(
                    previous_row.seq,
                    _where(previous_row),
                    f"its id is above the next row's (id={row.pk}): rows reordered",
                )
            )
        checkpoint = checkpoints.get(row.seq)
        if checkpoint is not None and checkpoint.hash != row.hash:
            problems.append(
                Problem(row.seq, where, f"differs from the signed checkpoint at seq {row.seq}")
            )
        expected, previous, previous_row = row.seq + 1, row.hash, row
    last_seq = expected - 1
    for seq in checkpoints:
        if seq > last_seq:
            problems.append(
                Problem(
                    float(seq),
                    f"checkpoint at seq {seq}",
                    f"the chain ends at seq {last_seq}: rows after it were deleted",
                )
            )
    head = AuditChainHead.objects.using(using).filter(pk=HEAD_ID).first()
    if head is None:
        if count:
            problems.append(Problem(float("inf"), "the chain head", "missing (deleted)"))
    else:
        if not hmac.compare_digest(head.mac, head_mac(head.seq, head.hash)):
            problems.append(
                Problem(float("inf"), "the chain head", "its signature does not match (forged)")
            )
        if (head.seq, head.hash) != (last_seq, previous):
            problems.append(
                Problem(
                    float(last_seq + 1),
                    "the chain head",
                    f"says the last row is seq {head.seq}, but the chain ends at seq "
                    f"{last_seq}: rows at the end were deleted or added",
                )
            )
    return Report(rows=count, checkpoints=len(checkpoints), problems=problems)
