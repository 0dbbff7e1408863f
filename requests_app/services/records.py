"""What every service shares: the locked reads of requests and certificates, and the
status counters that let list pages show totals without counting the whole table."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache

from django.conf import settings
from django.db import OperationalError, connection

from .. import pki
from ..models import (
    Certificate,
    CertificateRequest,
    StatusCount,
    is_public_id,
    normalize_public_id,
)
from .errors import (
    CertificateNotFound,
    InvalidRequest,
    InvalidTransition,
    RecordBusy,
    RequestNotFound,
)

#: PostgreSQL's lock_not_available: a lock wait ran past lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"

Status = CertificateRequest.Status


def count_moves(old: str | None, new: str, count: int = 1, *, join: str = "") -> tuple[str, list]:
    """The one fixed UPDATE that moves count requests from old (None: they are new) to new,
    as SQL and parameters: each counter row gets its delta from a VALUES list (no CASE),
    and the UPDATE reports how many counter rows it found (see counts_found). join: more
    FROM items (a CTE whose rows must exist for the counters to move)."""
    quote = connection.ops.quote_name
    table = quote(StatusCount._meta.db_table)
    deltas = [(new, count)] if old is None else [(old, -count), (new, count)]
    rows = ", ".join(["(%s, %s)"] * len(deltas))
    sql = (
        f"UPDATE {table} SET {quote('count')} = {table}.{quote('count')} + moves.column2 "  # noqa: S608 - our table
        f"FROM (VALUES {rows}) AS moves{join} WHERE {table}.{quote('status')} = moves.column1"
    )
    return sql, [value for delta in deltas for value in delta]


def counts_found(old: str | None, new: str, updated: int, count: int = 1) -> None:
    """After count_moves' UPDATE changed `updated` rows: make any counter row it missed
    (e.g. in a flushed test database)."""
    if updated < (1 if old is None else 2):
        for status, delta in ((old, -count), (new, count)):
            if status is not None:
                StatusCount.objects.get_or_create(status=status, defaults={"count": max(delta, 0)})


def move_count(old: str | None, new: str, *, count: int = 1) -> None:
    """count requests moved from old (None: they are new) to new; one statement either way."""
    sql, params = count_moves(old, new, count)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated = cursor.rowcount
    counts_found(old, new, updated, count)


def status_counts() -> dict[str, int]:
    """Requests per status, from the counters the services keep."""
    counts = dict.fromkeys(Status.values, 0)
    counts.update(StatusCount.objects.values_list("status", "count"))
    return counts


@contextmanager
def _lock_wait_limited(what: str):
    """Wait at most DATABASE_LOCK_TIMEOUT_SECONDS for a row lock (PostgreSQL), then refuse
    with RecordBusy instead of hanging. SET LOCAL: the limit ends with this transaction, and
    it also holds for the locks the rest of the transaction takes (CA row, counters)."""
    timeout = settings.DATABASE_LOCK_TIMEOUT_SECONDS
    if connection.vendor == "postgresql" and timeout:
        with connection.cursor() as cursor:
            milliseconds = f"{max(1, int(timeout * 1000))}ms"
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [milliseconds])
    with lock_waits_refused(what):
        yield


@contextmanager
def lock_waits_refused(what: str):
    """A lock wait that ran past the transaction's lock_timeout (set by _lock_wait_limited
    or read_request) becomes RecordBusy naming `what`."""
    try:
        yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        raise RecordBusy(
            f"{what} is being changed by someone else right now (another agent, or a task "
            "holding it); nothing was changed. Try again in a moment."
        ) from None


def lock_request(request_id: str | CertificateRequest) -> CertificateRequest:
    """Lock the request row and read it again, so that concurrent actions serialize."""
    rows = CertificateRequest.objects.select_for_update()
    if isinstance(request_id, CertificateRequest):
        rows = rows.filter(pk=request_id.pk)
        shown = request_id.display_id
    else:
        rows = rows.with_public_id(str(request_id))
        shown = str(request_id)
    try:
        with _lock_wait_limited(f"Request {shown}"):
            return rows.get()  # get(), not first(): the hot path of every approval, no ORDER BY
    except CertificateRequest.DoesNotExist:
        raise RequestNotFound(f"no request has the ID {request_id}") from None


def read_request(request_id: str | CertificateRequest) -> CertificateRequest:
    """Read the request without a lock (its decision is then written by compare-and-swap,
    see services.approval_writes). On PostgreSQL the same statement bounds this
    transaction's lock waits (DATABASE_LOCK_TIMEOUT_SECONDS, as _lock_wait_limited does),
    which the compare-and-swap and the audit chain's head may meet."""
    fields = CertificateRequest._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    params: list = []
    timeout = settings.DATABASE_LOCK_TIMEOUT_SECONDS
    if connection.vendor == "postgresql" and timeout:
        columns += ", set_config('lock_timeout', %s, true) AS lock_timeout_set"
        params.append(f"{max(1, int(timeout * 1000))}ms")
    if isinstance(request_id, CertificateRequest):
        where, value = quote("id"), request_id.pk
    elif is_public_id(str(request_id)):
        where, value = quote("public_id"), normalize_public_id(str(request_id))
    else:
        raise RequestNotFound(f"no request has the ID {request_id}")
    table = quote(CertificateRequest._meta.db_table)
    sql = f"SELECT {columns} FROM {table} WHERE {where} = %s"  # noqa: S608 - our table
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, value])
        row = cursor.fetchone()
    if row is None:
        raise RequestNotFound(f"no request has the ID {request_id}")
    values = [
        _converted(value, field, converters)
        # strict=False: on PostgreSQL the row ends with set_config's column, not a field's
        for value, (field, converters) in zip(
            row, _request_converters(connection.vendor), strict=False
        )
    ]
    return CertificateRequest.from_db(connection.alias, [f.attname for f in fields], values)


@cache
def _request_converters(vendor: str) -> tuple:
    """Each request column's converters from database values (what the ORM's compiler
    applies), worked out once per process for read_request."""
    del vendor  # the cache key: the converters depend on the backend
    table = CertificateRequest._meta.db_table
    return tuple(
        (f, connection.ops.get_db_converters(f.get_col(table)) + f.get_db_converters(connection))
        for f in CertificateRequest._meta.concrete_fields
    )


def _converted(value, field, converters):
    expression = field.get_col(CertificateRequest._meta.db_table)
    for converter in converters:
        value = converter(value, expression, connection)
    return value


def lock_certificate(serial: str | Certificate) -> Certificate:
    """Lock the certificate row and read it again, so that concurrent revocations serialize.
    A serial names a certificate as Certificate.objects.by_serial says (the newest)."""
    # of=self: lock the certificate only; the CA row is the CRL generator's lock.
    rows = Certificate.objects.select_for_update(of=("self",)).select_related("ca")
    shown = serial.serial_colons if isinstance(serial, Certificate) else serial
    with _lock_wait_limited(f"Certificate {shown}"):
        if isinstance(serial, Certificate):
            cert = rows.filter(pk=serial.pk).first()
        else:
            try:
                pki.parse_serial(serial)
                cert = rows.by_serial(serial)
            except pki.SerialError as exc:  # not a serial, or digits that name two
                raise InvalidRequest(str(exc), field="serial") from None
    if cert is None:
        raise CertificateNotFound(f"no certificate has the serial number {shown}", field="serial")
    return cert


def require_pending(req: CertificateRequest, action: str) -> None:
    """Refuse to act on a request that has had its decision."""
    if req.status != Status.PENDING:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status_text}, so it cannot be {action}"
        )
