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
from collections.abc import Iterable

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery, TextField
from django.db.models.functions import Cast, Lower

from .models import (
    Certificate,
    CertificateRequest,
    is_public_id,
    is_serial,
    normalize_public_id,
    normalize_serial,
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


def expiring(
    *, now: dt.datetime, within_days: int, profile: str | None = None, q: str = ""
) -> QuerySet:
    """The certificates that lapse within that many days of now (not yet expired, not
    revoked, not renewed), soonest first, each with `pending_renewal` (the request ID of a
    renewal that waits, or None) and its request's channel and email; q searches the
    serial, the requester's email, the request ID, the subject and SANs."""
    rows = expiring_between(now, now + dt.timedelta(days=within_days), profile=profile)
    rows = (
        rows.select_related("request")
        .defer("pem", "request__csr_pem", "request__encrypted_private_key")
        .annotate(
            pending_renewal=Subquery(
                _renewals(WAITING).order_by("submitted_at", "pk").values("public_id")[:1]
            )
        )
    )
    q = (q or "").strip()
    return search(rows, q) if q else rows


#: An email search looks at this many of the address's certificates at most.
MAX_EMAIL_CERTIFICATES = 1000
#: A search that starts with one of these looks in the SANs (as stored, "DNS:host").
SAN_PREFIXES = ("dns", "ip", "email", "uri")


def search(rows: QuerySet, q: str) -> QuerySet:
    """A serial uses its index, an email the request_email_lower index, a request ID its
    unique index; "DNS:...", "IP:..." look in the SANs and anything else in the subject,
    scanning the window's rows (only these two are not index lookups)."""
    if is_serial(q) and len(normalize_serial(q)) >= 16:  # short hex may be a word
        return rows.filter(serial=normalize_serial(q))
    if q.split(":", 1)[0].lower() in SAN_PREFIXES:  # "DNS:host", "IP:addr", "email:x@y"
        return rows.alias(sans_text=Cast("sans", TextField())).filter(sans_text__icontains=q)
    if "@" in q and not any(ch.isspace() for ch in q):
        # The certificates of that address first (request_email_lower), then those by
        # primary key: given a join or a subquery, SQLite's planner walked the whole window.
        asked = CertificateRequest.objects.alias(email_lower=Lower("requester_email")).filter(
            email_lower=q.lower(), certificate__isnull=False
        )
        ids = list(asked.values_list("certificate_id", flat=True)[:MAX_EMAIL_CERTIFICATES])
        return rows.filter(pk__in=ids)
    if is_public_id(q):  # the request that this certificate answered
        return rows.filter(request__public_id=normalize_public_id(q))
    return rows.filter(subject__icontains=q)


def count_expiring(*, now: dt.datetime, within_days: int, cap: int = COUNT_CAP) -> int:
    """How many certificates expiring() lists, counted up to cap + 1 (shown as "cap+")."""
    return count_expiring_by(now=now, windows=[within_days], cap=cap)[within_days]


def count_expiring_by(
    *, now: dt.datetime, windows: Iterable[int], cap: int = COUNT_CAP
) -> dict[int, int]:
    """How many certificates expiring() lists for each window (days), each counted up to
    cap + 1, in one walk of the index: the expiry times of the first cap + 1 certificates
    of the longest window, counted here (no COUNT over the table)."""
    windows = sorted(set(windows))
    soonest = list(
        expiring_between(now, now + dt.timedelta(days=windows[-1])).values_list(
            "not_after", flat=True
        )[: cap + 1]
    )
    counts = {}
    for days in windows:
        end = now + dt.timedelta(days=days)
        counts[days] = sum(1 for not_after in soonest if not_after <= end)
    return counts


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
