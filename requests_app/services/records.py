"""What every service shares: the locked reads of requests and certificates, and the
status counters that let list pages show totals without counting the whole table."""

from __future__ import annotations

from django.db.models import Case, F, Value, When

from ..models import Certificate, CertificateRequest, StatusCount
from .errors import CertificateNotFound, InvalidTransition, RequestNotFound

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


def lock_request(request_id: str | CertificateRequest) -> CertificateRequest:
    """Lock the request row and read it again, so that concurrent actions serialize."""
    rows = CertificateRequest.objects.select_for_update()
    if isinstance(request_id, CertificateRequest):
        rows = rows.filter(pk=request_id.pk)
    else:
        rows = rows.with_public_id(str(request_id))
    try:
        return rows.get()  # get(), not first(): the hot path of every approval, no ORDER BY
    except CertificateRequest.DoesNotExist:
        raise RequestNotFound(f"no request has the ID {request_id}") from None


def lock_certificate(serial: str | Certificate) -> Certificate:
    """Lock the certificate row and read it again, so that concurrent revocations serialize.
    A serial names a certificate as Certificate.objects.by_serial says (the newest)."""
    # of=self: lock the certificate only; the CA row is the CRL generator's lock.
    rows = Certificate.objects.select_for_update(of=("self",)).select_related("ca")
    if isinstance(serial, Certificate):
        cert, shown = rows.filter(pk=serial.pk).first(), serial.serial
    else:
        cert, shown = rows.by_serial(serial), serial
    if cert is None:
        raise CertificateNotFound(f"no certificate has the serial number {shown}", field="serial")
    return cert


def require_pending(req: CertificateRequest, action: str) -> None:
    """Refuse to act on a request that has had its decision."""
    if req.status != Status.PENDING:
        raise InvalidTransition(
            f"request {req.display_id} is {req.status_text}, so it cannot be {action}"
        )
