"""What every service shares: the locked reads of requests and certificates, and the
status counters that let list pages show totals without counting the whole table."""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection
from django.db.models import Case, F, Value, When

from .. import pki
from ..models import Certificate, CertificateRequest, StatusCount
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


def move_count(old: str | None, new: str, *, count: int = 1) -> None:
    """count requests moved from old (None: they are new) to new; one statement either way."""
    if old is None:
        updated = StatusCount.objects.filter(status=new).update(count=F("count") + count)
    else:
        updated = StatusCount.objects.filter(status__in=[old, new]).update(
            count=F("count") + Case(When(status=new, then=Value(count)), default=Value(-count))
        )
    if updated < (1 if old is None else 2):  # a counter row is missing (e.g. a flushed test DB)
        for status, delta in ((old, -count), (new, count)):
            if status is not None:
                StatusCount.objects.get_or_create(status=status, defaults={"count": max(delta, 0)})


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
