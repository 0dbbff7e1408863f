"""Certificate search: the CertSearchRequest criteria `CertClient.list_certs` sends (each
group switched on by its ...InUse flag, as Dogtag reads them), as a queryset."""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Q, QuerySet

from .. import pki, profiles
from ..models import MAX_SERIAL_LENGTH, Certificate
from . import ids
from .errors import RestError
from .shapes import REASON_CODES

#: Subject criteria -> the RDN attribute they match.
SUBJECT_FIELDS = {
    "commonName": "CN",
    "eMail": "E",
    "userID": "UID",
    "orgUnit": "OU",
    "org": "O",
    "locality": "L",
    "state": "ST",
    "country": "C",
}
STATUSES = ("VALID", "INVALID", "REVOKED", "EXPIRED", "REVOKED_EXPIRED")
MAX_VALUE = 256
#: The largest serial Certificate.serial holds (and serial_sort pads to).
LARGEST_SERIAL = 16**MAX_SERIAL_LENGTH - 1


def _flag(criteria: dict, name: str) -> bool:
    value = criteria.get(name)
    return value is True or str(value).lower() == "true"


def _text(criteria: dict, name: str) -> str:
    value = criteria.get(name)
    if value is None:
        return ""
    if isinstance(value, (dict, list)) or len(str(value)) > MAX_VALUE:
        raise RestError("BadRequest", f"{name} must be a short string")
    return str(value).strip()


def _serial(criteria: dict, name: str) -> int | None:
    text = _text(criteria, name)
    if not text:
        return None
    hex_serial = ids.serial_hex(text)
    if hex_serial is None:
        raise RestError("BadRequest", f"{name} is not a serial number: {text[:40]!r}")
    return int(hex_serial, 16)


def _when(criteria: dict, name: str) -> dt.datetime | None:
    """A date as Dogtag's search takes it: epoch milliseconds (or seconds), or ISO 8601."""
    value = criteria.get(name)
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or str(value).strip().lstrip("-").isdigit():
            number = int(value)
            seconds = number / 1000 if abs(number) > 10**11 else number
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        when = dt.datetime.fromisoformat(str(value).strip())
    except (ValueError, OverflowError, OSError):
        raise RestError("BadRequest", f"{name} is not a date: {str(value)[:40]!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _range(rows: QuerySet, criteria: dict, field: str, low: str, high: str) -> QuerySet:
    start, end = _when(criteria, low), _when(criteria, high)
    if start is not None:
        rows = rows.filter(**{f"{field}__gte": start})
    if end is not None:
        rows = rows.filter(**{f"{field}__lte": end})
    return rows


def _serial_range(rows: QuerySet, low: int | None, high: int | None) -> QuerySet:
    """Serials are hex text; Certificate.serial_sort is the serial zero-padded to a fixed
    width (computed and indexed by the database), whose text order is numeric order: the
    range is an indexed range, compared in the same padded form."""
    if low is not None:
        if low > LARGEST_SERIAL:
            return rows.none()
        rows = rows.filter(serial_sort__gte=_padded(low))
    if high is not None and high < LARGEST_SERIAL:
        rows = rows.filter(serial_sort__lte=_padded(high))
    return rows


def _padded(serial: int) -> str:
    return format(serial, "x").rjust(MAX_SERIAL_LENGTH, "0")


def _status(rows: QuerySet, status: str) -> QuerySet:
    now = pki.utcnow()
    valid, revoked = Certificate.Status.VALID, Certificate.Status.REVOKED
    filters = {
        "VALID": Q(status=valid, not_after__gt=now),
        "EXPIRED": Q(status=valid, not_after__lte=now),
        "REVOKED": Q(status=revoked, not_after__gt=now),
        "REVOKED_EXPIRED": Q(status=revoked, not_after__lte=now),
        "INVALID": Q(not_before__gt=now),
    }
    return rows.filter(filters[status])


def search(criteria: dict, *, public: bool = True) -> QuerySet:
    """The certificates matching the criteria, newest first; public: server certificates
    only (those of profiles that name hostnames, not people)."""
    rows = Certificate.objects.select_related("ca").order_by("-created", "-pk")
    if public:
        hostname_profiles = [
            p.name for p in profiles.all_profiles(enabled_only=False) if p.takes_hostnames
        ]
        rows = rows.filter(profile__in=hostname_profiles)
    status = _text(criteria, "status").upper()
    if status:
        if status not in STATUSES:
            raise RestError(
                "BadRequest", f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}"
            )
        rows = _status(rows, status)
    if _flag(criteria, "serialNumberRangeInUse"):
        low, high = _serial(criteria, "serialFrom"), _serial(criteria, "serialTo")
        rows = _serial_range(rows, low, high)
    if _flag(criteria, "subjectInUse"):
        exact = _flag(criteria, "matchExactly")
        for name, attribute in SUBJECT_FIELDS.items():
            value = _text(criteria, name)
            if not value:
                continue
            if attribute == "E":
                rows = rows.filter(Q(subject__icontains=value) | Q(sans__icontains=value))
            elif exact:
                rows = rows.filter(Q(subject__iregex=rf"(^|,){attribute}={re.escape(value)}(,|$)"))
            else:
                rows = rows.filter(subject__icontains=f"{attribute}=").filter(
                    subject__icontains=value
                )
    if _flag(criteria, "revocationReasonInUse"):
        reason = _text(criteria, "revocationReason")
        if reason:
            rows = rows.filter(revocation_reason=_reason(reason))
    if _flag(criteria, "revokedOnInUse"):
        rows = _range(rows, criteria, "revoked_at", "revokedOnFrom", "revokedOnTo")
    if _flag(criteria, "issuedOnInUse"):
        rows = _range(rows, criteria, "created", "issuedOnFrom", "issuedOnTo")
    if _flag(criteria, "validNotBeforeInUse"):
        rows = _range(rows, criteria, "not_before", "validNotBeforeFrom", "validNotBeforeTo")
    if _flag(criteria, "validNotAfterInUse"):
        rows = _range(rows, criteria, "not_after", "validNotAfterFrom", "validNotAfterTo")
    if _flag(criteria, "issuedByInUse"):
        issued_by = _text(criteria, "issuedBy")
        if issued_by:
            rows = rows.filter(request__acted_by__username=issued_by)
    return rows


def _reason(text: str) -> str:
    """A reason as a CRL code (Dogtag's form) or a name."""
    if text.isdigit():
        for name, code in REASON_CODES.items():
            if code == int(text):
                return name
    name = pki.parse_reason(text)
    if name is None:
        raise RestError("BadRequest", f"revocationReason {text[:40]!r} is not a reason")
    return name
