"""Certificates about to expire: the one selection that the agents' Expiring page, the
queue's counts, `list_certificates --expiring-within` and delivery's reminders share.

Reads only. Every list is a range of not_after over valid certificates, walked in the
index certificate_expiry (status, not_after), or certificate_profile_expiry (profile,
status, not_after) with a profile; whether a certificate was renewed or has a renewal
waiting is an EXISTS probe of its renewal requests (the renewal_of index) for the rows a
page shows or a cap allows, so nothing here counts or scans the whole table.

A certificate counts as renewed when a renewal request for it (renewal_of) was issued,
and as having a renewal pending while one waits (for an agent, or for its requester's
mailbox confirmation).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Lower

from .models import (
    Certificate,
    CertificateRequest,
    is_public_id,
    is_serial,
    normalize_public_id,
    normalize_serial,
    serial_readings,
)

#: The windows the Expiring page offers, in days.
WINDOWS = (7, 30, 90)
#: Counts stop here ("1000+"): a count is a walk of the index, bounded by this.
COUNT_CAP = 1000

Status = CertificateRequest.Status
WAITING = (Status.PENDING, Status.AWAITING_EMAIL)


class RenewalMethod:
    """How a certificate will be renewed, read from the channel its request came through."""

    CERTMONGER = "certmonger"
    ACME = "acme"
    MANUAL = "manual"

    LABELS = {
        CERTMONGER: "certmonger (Dogtag protocol)",
        ACME: "ACME client",
        MANUAL: "manual (end-entity pages)",
    }


def renewal_method(channel: str | None) -> str:
    """certmonger for requests that came through the Dogtag adapter, ACME for channel
    "acme", manual for everything else (web, command, agent)."""
    if channel == "dogtag":
        return RenewalMethod.CERTMONGER
    if channel == "acme":
        return RenewalMethod.ACME
    return RenewalMethod.MANUAL


def _renewals(statuses: Iterable[str]) -> QuerySet:
    return CertificateRequest.objects.filter(renewal_of=OuterRef("pk"), status__in=statuses)


def not_renewed(rows: QuerySet) -> QuerySet:
    """Leave out certificates whose renewal was issued."""
    return rows.filter(~Exists(_renewals([Status.COMPLETE])))


def expiring_between(
    start: dt.datetime, end: dt.datetime, *, profile: str | None = None
) -> QuerySet:
    """Valid certificates with start < not_after <= end that nobody renewed, soonest first."""
    rows = Certificate.objects.filter(
        status=Certificate.Status.VALID, not_after__gt=start, not_after__lte=end
    )
    if profile:
        rows = rows.filter(profile=profile)
    return not_renewed(rows).order_by("not_after", "pk")


class BadCursor(ValueError):
    """A paging cursor (the "after" of a Later link) that is not one this page made."""


#: A cursor: the last row's not_after in microseconds since the epoch, "-", its id.
_CURSOR = re.compile(r"(\d{1,18})-(\d{1,18})")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_PK = 2**63 - 1


def encode_cursor(not_after: dt.datetime, pk: int) -> str:
    """The position after a row, for the Later link: the page after it starts there."""
    micros = (not_after - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}-{pk}"


def decode_cursor(text: str) -> tuple[dt.datetime, int]:
    """(not_after, id) from encode_cursor's text; BadCursor for anything else."""
    match = _CURSOR.fullmatch(text or "")
    if not match or int(match[2]) > _MAX_PK:
        raise BadCursor("This paging link is not valid: start again from the first page.")
    try:
        not_after = _EPOCH + dt.timedelta(microseconds=int(match[1]))
    except OverflowError:
        raise BadCursor("This paging link is not valid: start again from the first page.") from None
    if not_after.year > 9999:
        raise BadCursor("This paging link is not valid: start again from the first page.")
    return not_after, int(match[2])


def _after(rows: QuerySet, cursor: tuple[dt.datetime, int]) -> QuerySet:
    """Rows after the cursor in (not_after, id) order: a range of the index from its
    not_after on (so the walk starts there, no OFFSET), ties broken by id."""
    not_after, pk = cursor
    return rows.filter(not_after__gte=not_after).filter(Q(not_after__gt=not_after) | Q(pk__gt=pk))


def expiring(
    *,
    now: dt.datetime,
    within_days: int,
    profile: str | None = None,
    q: str = "",
    after: tuple[dt.datetime, int] | None = None,
) -> QuerySet:
    """The certificates that lapse within that many days of now (not yet expired, not
    revoked, not renewed), soonest first (then by id), from after the cursor (not_after,
    id) if given, each with `pending_renewal` (the request ID of a renewal that waits, or
    None) and its request's channel and email; q searches the serial, the requester's
    email, the request ID, the start of the subject's CN (or subject) and the SANs."""
    start, end = now, now + dt.timedelta(days=within_days)
    q = (q or "").strip()
    ids = _searched_ids(q, start=start, end=end, profile=profile, after=after) if q else None
    if ids is None:
        rows = expiring_between(start, end, profile=profile)
        if q:
            rows = search(rows, q)
        if after:
            rows = _after(rows, after)
    else:
        # Already in the window, of the profile and after the cursor: looked up by key.
        rows = not_renewed(Certificate.objects.filter(pk__in=ids)).order_by("not_after", "pk")
    return (
        rows.select_related("request")
        .defer("pem", "request__csr_pem", "request__encrypted_private_key")
        .annotate(
            pending_renewal=Subquery(
                _renewals(WAITING).order_by("submitted_at", "pk").values("public_id")[:1]
            )
        )
    )


#: An email or subject search looks at this many certificates of the address or prefix;
#: a subject prefix with more is searched along the window instead (it is not selective,
#: so the walk soon fills a page).
MAX_SEARCH_CANDIDATES = 1000
#: A search that starts with one of these looks in the SANs (as stored, "DNS:host").
SAN_PREFIXES = ("dns", "ip", "email", "uri")


def _kind(q: str) -> str:
    if is_serial(q) and len(normalize_serial(q)) >= 16:  # short hex may be a word
        return "serial"
    if q.split(":", 1)[0].lower() in SAN_PREFIXES:  # "DNS:host", "IP:addr", "email:x@y"
        return "san"
    if "@" in q and not any(ch.isspace() for ch in q):
        return "email"
    if is_public_id(q):  # the request that this certificate answered
        return "request"
    return "subject"


def subject_prefix(q: str) -> str:
    """The subject search key's start that q asks for: q lower-cased, without a leading
    "CN=" (the key is the CN)."""
    key = unicodedata.normalize("NFC", q).lower()
    if key.startswith("cn="):
        key = key[3:]
    return key.strip()


def _prefix_filter(rows: QuerySet, prefix: str, *, ranged: bool) -> QuerySet:
    rows = rows.filter(subject_search__startswith=prefix)
    if ranged and connection.vendor != "postgresql":
        # SQLite uses an index for LIKE only under NOCASE; the range of the (lower-cased)
        # key walks certificate_subject_search. PostgreSQL's LIKE 'p%' walks it already
        # (varchar_pattern_ops), and a range there would follow the collation's order.
        rows = rows.filter(subject_search__gte=prefix, subject_search__lt=prefix + "\U0010ffff")
    return rows


def lookup_query(q: str) -> QuerySet | None:
    """The index lookup an email or subject search starts with: the address's
    certificate ids (index request_email_lower), or the certificates whose subject key
    starts with the prefix (certificate_subject_search); at most MAX_SEARCH_CANDIDATES + 1
    rows. None for other searches."""
    kind = _kind(q)
    if kind == "email":
        asked = CertificateRequest.objects.alias(email_lower=Lower("requester_email")).filter(
            email_lower=q.lower(), certificate__isnull=False
        )
        return asked.values_list("certificate_id", flat=True)[: MAX_SEARCH_CANDIDATES + 1]
    if kind == "subject" and subject_prefix(q):
        found = _prefix_filter(Certificate.objects.all(), subject_prefix(q), ranged=True)
        return found.order_by()
    return None


def _searched_ids(
    q: str,
    *,
    start: dt.datetime,
    end: dt.datetime,
    profile: str | None,
    after: tuple[dt.datetime, int] | None,
) -> list[int] | None:
    """For an email or a subject prefix: the ids of the certificates it finds that are in
    the window (valid, start < not_after <= end, of the profile, after the cursor), found
    through the key's index alone (request_email_lower, certificate_subject_search) and
    checked here, so no planner can prefer walking the window; None for other searches,
    or a prefix too common to look up this way."""
    lookup = lookup_query(q)
    if lookup is None:
        return None
    if lookup.model is CertificateRequest:  # an email: its certificates, by primary key
        found = Certificate.objects.filter(pk__in=list(lookup))
    else:
        found = lookup
    rows = list(
        found.order_by().values_list("pk", "not_after", "status", "profile")[
            : MAX_SEARCH_CANDIDATES + 1
        ]
    )
    if len(rows) > MAX_SEARCH_CANDIDATES:
        return None  # a common prefix: search along the window (search())
    return [
        pk
        for pk, not_after, status, prof in rows
        if status == Certificate.Status.VALID
        and start < not_after <= end
        and (not profile or prof == profile)
        and (not after or (not_after, pk) > after)
    ]


def search(rows: QuerySet, q: str) -> QuerySet:
    """Filter a window's rows: a serial uses its index, a request ID its unique index;
    "DNS:...", "IP:..." look in the SANs (scanning the window's rows); an email or a subject
    prefix is looked up by its index first (_searched_ids), and comes here only for a
    prefix shared by more than MAX_SEARCH_CANDIDATES certificates, matched along the
    window."""
    kind = _kind(q)
    if kind == "serial":
        return rows.filter(serial__in=serial_readings(q))  # bare digits: hex or decimal
    if kind == "san":
        return rows.alias(sans_text=Cast("sans", TextField())).filter(sans_text__icontains=q)
    if kind == "email":
        return rows.filter(request__requester_email__iexact=q)
    if kind == "request":
        return rows.filter(request__public_id=normalize_public_id(q))
    return _prefix_filter(rows, subject_prefix(q), ranged=False)


def count_expiring(*, now: dt.datetime, within_days: int, cap: int = COUNT_CAP) -> int:
    """How many certificates expiring() lists, counted up to cap + 1 (shown as "cap+")."""
    return count_expiring_by(now=now, windows=[within_days], cap=cap)[within_days]


def count_expiring_by(
    *, now: dt.datetime, windows: Iterable[int], cap: int = COUNT_CAP
) -> dict[int, int]:
    """How many certificates expiring() lists for each window (days), each counted up to
    cap + 1, in one query: COUNTs over the first cap + 1 entries of the longest window in
    the index certificate_expiry (each with its renewal probe), never over the table. The
    entries are the soonest, so a shorter window's count is exact below the cap."""
    windows = sorted(set(windows))
    ends = {days: now + dt.timedelta(days=days) for days in windows}
    soonest = (
        expiring_between(now, ends[windows[-1]])
        .order_by("not_after")
        .values("pk", "not_after")[: cap + 1]
    )
    counts = soonest.aggregate(
        **{
            f"within_{days}": Count("pk", filter=Q(not_after__lte=end))
            for days, end in ends.items()
        }
    )
    return {days: counts[f"within_{days}"] for days in windows}


def reminder_windows(*, now: dt.datetime, thresholds: Iterable[int]) -> list[tuple[int, QuerySet]]:
    """For each reminder threshold (days before expiry), the certificates for which it is
    the one due now: those expiring after the next smaller threshold and within this one,
    that were issued at least that long before they expire (a 10-day certificate gets no
    30-day reminder on the day it is issued), and that answered a request (the reminder
    goes to its requester). A certificate whose larger threshold passed unseen (the job did
    not run) gets only the reminder due now, never a stale one."""
    windows = []
    lower = 0
    for days in sorted(set(thresholds)):
        rows = expiring_between(
            now + dt.timedelta(days=lower), now + dt.timedelta(days=days)
        ).filter(
            request__isnull=False,
            not_before__lte=F("not_after") - dt.timedelta(days=days),
        )
        windows.append((days, rows))
        lower = days
    return windows


def is_renewed(certificate: Certificate) -> bool:
    """Whether a renewal of this certificate was issued."""
    return certificate.renewals.filter(status=Status.COMPLETE).exists()


def pending_renewal(certificate: Certificate) -> CertificateRequest | None:
    """The renewal of this certificate that waits, if one does."""
    return certificate.renewals.filter(status__in=WAITING).order_by("submitted_at", "pk").first()
