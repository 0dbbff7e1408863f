"""The single approval's writes, as fixed statements: the hot path of issuance.

The request was read without a lock and its certificate signed; here, in the approval's
transaction, the certificate row is inserted, the request moves from pending to complete
by compare-and-swap (`UPDATE ... WHERE id = ? AND status = 'pending'`), the status
counters move and the request_approved audit row is chained and inserted. When the swap
finds the request decided already (another agent came first), InvalidTransition is raised
and the caller's transaction rolls back: nothing signed is stored, no audit row, no signal.

On PostgreSQL that is three round trips: the swap with the counters (drawing the
certificate's id), the audit chain's head, locked and read, then one statement whose CTEs
write the certificate, link it, and insert the audit row and move the head.
Elsewhere (SQLite, where BEGIN IMMEDIATE already serialises writers) the statements run
one by one on one cursor, the certificate first so that the swap can name it."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.db import connections, router

from .. import auditchain
from ..models import AuditEvent, Certificate, CertificateRequest
from .errors import InvalidTransition
from .records import count_moves, counts_found, lock_waits_refused

Status = CertificateRequest.Status


@cache
def _insert(model, vendor: str, *, with_pk: bool) -> tuple[str, tuple]:
    """INSERT INTO model's table, every stored column (the pk only when with_pk), and the
    fields whose values go in, in order. Built once per process."""
    connection = next(c for c in connections.all() if c.vendor == vendor)
    fields = tuple(
        f for f in model._meta.concrete_fields if not f.generated and (with_pk or not f.primary_key)
    )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = quote(model._meta.db_table)
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", fields  # noqa: S608 - our table


def _values(obj, fields, connection) -> list:
    return [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]


def _swap(connection) -> str:
    quote = connection.ops.quote_name
    table = quote(CertificateRequest._meta.db_table)
    return (
        f"UPDATE {table} SET status = %s, certificate_id = %s, acted_by_id = %s, "  # noqa: S608 - our table
        "agent_note = %s, updated_at = %s WHERE id = %s AND status = %s"
    )


def _swap_params(req: CertificateRequest, cert: Certificate, connection) -> list:
    updated_at = connection.ops.adapt_datetimefield_value(req.updated_at)
    return [
        Status.COMPLETE,
        cert.pk,
        req.acted_by_id,
        req.agent_note,
        updated_at,
        req.pk,
        Status.PENDING,
    ]


def store_approval(
    req: CertificateRequest, cert: Certificate, audit_row: Callable[[], AuditEvent]
) -> AuditEvent:
    """Insert cert, swap req (already completed in memory: services.issuance.complete) from
    pending to complete, move the counters and insert audit_row() (built once cert has its
    id); InvalidTransition if req was no longer pending. Inside the approval's transaction."""
    using = router.db_for_write(Certificate)
    connection = connections[using]
    with lock_waits_refused(f"Request {req.display_id}"):
        if connection.vendor == "postgresql":
            event = _store_postgresql(req, cert, audit_row, using)
        else:
            event = _store_one_by_one(req, cert, audit_row, using)
    for row in (cert, event):
        row._state.adding, row._state.db = False, using
    return event


def _store_one_by_one(req, cert, audit_row, using) -> AuditEvent:
    connection = connections[using]
    insert, fields = _insert(Certificate, connection.vendor, with_pk=False)
    with connection.cursor() as cursor:
        cursor.execute(f"{insert} RETURNING id", _values(cert, fields, connection))
        cert.pk = cursor.fetchone()[0]
        cursor.execute(_swap(connection), _swap_params(req, cert, connection))
        if cursor.rowcount != 1:
            raise _decided_already(req)
        sql, params = count_moves(Status.PENDING, Status.COMPLETE)
        cursor.execute(sql, params)
        counts_found(Status.PENDING, Status.COMPLETE, cursor.rowcount)
        event = audit_row()
        auditchain.chain([event], using=using)  # the head: locked, read, moved
        insert, fields = _insert(AuditEvent, connection.vendor, with_pk=False)
        cursor.execute(f"{insert} RETURNING id", _values(event, fields, connection))
        event.pk = cursor.fetchone()[0]
    return event


def _store_postgresql(req, cert, audit_row, using) -> AuditEvent:
    connection = connections[using]
    quote = connection.ops.quote_name
    certificates = quote(Certificate._meta.db_table)
    requests = quote(CertificateRequest._meta.db_table)
    counts_sql, counts_params = count_moves(Status.PENDING, Status.COMPLETE, join=", swapped")
    with connection.cursor() as cursor:
        # The swap first, then the counters, then the audit chain's head: the order in
        # which every decision (reject, cancel) takes those locks, so none waits on another.
        # The counters move only if the swap found the request pending.
        cursor.execute(
            f"WITH swapped AS (UPDATE {requests} SET status = %s, acted_by_id = %s, "  # noqa: S608 - our tables
            "agent_note = %s, updated_at = %s WHERE id = %s AND status = %s RETURNING id), "
            f"counted AS ({counts_sql} RETURNING 1) "
            "SELECT (SELECT count(*) FROM swapped), (SELECT count(*) FROM counted), "
            f"nextval(pg_get_serial_sequence('{certificates}', 'id'))",
            [
                Status.COMPLETE,
                req.acted_by_id,
                req.agent_note,
                req.updated_at,
                req.pk,
                Status.PENDING,
                *counts_params,
            ],
        )
        swapped, counted, cert.pk = cursor.fetchone()
        if swapped != 1:
            raise _decided_already(req)
        counts_found(Status.PENDING, Status.COMPLETE, counted)
        head_query = auditchain.locked_head_query(connection)
        cursor.execute(head_query, [auditchain.HEAD_ID])
        row = cursor.fetchone()
        if row is None:
            auditchain.create_head(using)
            cursor.execute(head_query, [auditchain.HEAD_ID])
            row = cursor.fetchone()
        head = auditchain.head_from_row(row)
        event = audit_row()
        checkpoint = auditchain.link([event], head, using=using)
        head_sql, head_params = auditchain.head_update(head, using=using, checkpoint=checkpoint)
        insert_certificate, certificate_fields = _insert(Certificate, "postgresql", with_pk=True)
        insert_audit, audit_fields = _insert(AuditEvent, "postgresql", with_pk=False)
        cursor.execute(
            f"WITH stored AS ({insert_certificate}), "  # noqa: S608 - our tables
            f"linked AS (UPDATE {requests} SET certificate_id = %s WHERE id = %s), "
            f"audited AS ({insert_audit} RETURNING id), "
            f"moved AS ({head_sql}) "
            "SELECT id FROM audited",
            [
                *_values(cert, certificate_fields, connection),
                cert.pk,
                req.pk,
                *_values(event, audit_fields, connection),
                *head_params,
            ],
        )
        event.pk = cursor.fetchone()[0]
    return event


def _decided_already(req: CertificateRequest) -> InvalidTransition:
    """The loser of a race: the same refusal require_pending gives, with the status now."""
    rows = CertificateRequest.objects.filter(pk=req.pk)
    req.status = rows.values_list("status", flat=True).first() or req.status
    return InvalidTransition(
        f"request {req.display_id} is {req.status_text}, so it cannot be approved"
    )


def store_bulk_approvals(
    issued: list[tuple[CertificateRequest, Certificate]], audit_rows: Callable[[], list[AuditEvent]]
) -> None:
    """The bulk path's writes for a chunk of requests locked together (and so still
    pending), each already completed in memory: one INSERT of the certificates, one
    UPDATE ... FROM (VALUES ...) of the requests, the counters, then audit_rows() (built
    once the certificates have their ids), chained and inserted in one statement."""
    using = router.db_for_write(Certificate)
    connection = connections[using]
    certificates = [cert for _, cert in issued]
    ids = _insert_many(certificates, connection, key="fingerprint_sha256")
    for cert in certificates:
        cert.pk = ids[cert.fingerprint_sha256]
    quote = connection.ops.quote_name
    table = quote(CertificateRequest._meta.db_table)
    first = issued[0][0]
    rows = ", ".join(["(%s, %s)"] * len(issued))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, certificate_id = chosen.column2, "  # noqa: S608 - our table
            "acted_by_id = %s, agent_note = %s, updated_at = %s "
            f"FROM (VALUES {rows}) AS chosen WHERE {table}.id = chosen.column1",
            [
                Status.COMPLETE,
                first.acted_by_id,
                "",
                connection.ops.adapt_datetimefield_value(first.updated_at),
                *(value for req, cert in issued for value in (req.pk, cert.pk)),
            ],
        )
        sql, params = count_moves(Status.PENDING, Status.COMPLETE, len(issued))
        cursor.execute(sql, params)
        counts_found(Status.PENDING, Status.COMPLETE, cursor.rowcount, len(issued))
    events = audit_rows()
    auditchain.chain(events, using=using)
    ids = _insert_many(events, connection, key="seq")
    for event in events:
        event.pk = ids[event.seq]
    for row in (*certificates, *events):
        row._state.adding, row._state.db = False, using


def _insert_many(objs: list, connection, *, key: str) -> dict:
    """Insert objs (of one model) in one statement; their new ids by the unique field key."""
    insert, fields = _insert(type(objs[0]), connection.vendor, with_pk=False)
    head, marks = insert.rsplit(" VALUES ", 1)
    quote = connection.ops.quote_name
    column = type(objs[0])._meta.get_field(key).column
    with connection.cursor() as cursor:
        cursor.execute(
            f"{head} VALUES {', '.join([marks] * len(objs))} RETURNING id, {quote(column)}",
            [value for obj in objs for value in _values(obj, fields, connection)],
        )
        return {found: pk for pk, found in cursor.fetchall()}
