"""The agent queue's one search box: request IDs, certificate serials, requester emails,
subjects and SANs, typed the way people copy them.

Reads only. A whole request ID or serial is a lookup in its unique index (and the queue
jumps to it); an address or its start, the start of a request ID and the start of a CN walk
index ranges (request_email_lower, the public_id unique index, request_subject_lower).
Any other part of a subject, SAN, address or name (a domain, "api" inside a host name) is
matched among the newest SCAN_WINDOW requests only, a range of request_newest: nothing here
reads the whole queue, which at 100,000 requests costs half a second.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Lower
from django.urls import reverse

from .models import (
    PUBLIC_ID_ALPHABET,
    PUBLIC_ID_LENGTH,
    Certificate,
    CertificateRequest,
    SubjectKey,
    is_public_id,
    is_serial,
    normalize_public_id,
)

#: The start of a request ID must be this long to be looked up as one ("ABCD").
MIN_ID_PREFIX = 4
#: A serial is looked up on its own (no free-text match) from this many characters; real
#: serials are ~40 hex digits, and short hex ("cafe", "added") may be a word.
MIN_SERIAL_LENGTH = 16

#: Each index lookup takes at most this many requests (the start of a common name).
MAX_CANDIDATES = 1000
#: Any part of a subject, SAN, address or name is matched among this many newest requests.
SCAN_WINDOW = 2000
SUBJECT_KEY = SubjectKey("subject")

#: What a SAN never holds but the JSON text of the list of SANs does.
JSON_PUNCTUATION = frozenset('"[],\\')

#: What the box searches, for the page's hint and its "nothing found" sentence.
SEARCHED = "request IDs, certificate serials, requester emails, subjects and SANs"
#: How the page says where a part of a name is looked for.
SEARCHED_PARTS = f"parts of names are matched in the newest {SCAN_WINDOW:,} requests"


def _looks_like_serial(q: str) -> bool:
    return is_serial(q) and sum(ch.isalnum() for ch in q) >= MIN_SERIAL_LENGTH


def exact_match_url(q: str) -> str | None:
    """The agent page of what q names exactly, a request ID or a certificate serial (the
    request it answered, else the certificate), or None; pki.AmbiguousSerial for digits
    that name two certificates."""
    q = q.strip()
    if is_public_id(q):
        req = CertificateRequest.objects.by_public_id(q)
        if req is not None:
            return req.get_agent_url()
    if _looks_like_serial(q):
        # pki.AmbiguousSerial (digits naming a certificate in each reading) is the caller's
        # to show: which of the two is meant, the agent says.
        cert = Certificate.objects.select_related("request").by_serial(q)
        if cert is not None:
            req = cert.issued_request
            return req.get_agent_url() if req else reverse("agent:certificate", args=[cert.serial])
    return None


def _prefix(rows: QuerySet, field: str, prefix: str, top: str) -> QuerySet:
    """rows whose field starts with prefix, as a walk of the field's index: LIKE 'p%' on
    PostgreSQL (indexed under the C collation), a range on SQLite, whose LIKE ignores
    indexes. top: a character above every one the field holds."""
    rows = rows.filter(**{f"{field}__startswith": prefix})
    if connection.vendor != "postgresql":
        rows = rows.filter(**{f"{field}__gte": prefix, f"{field}__lt": prefix + top})
    return rows


def _email_prefix(q: str) -> QuerySet:
    """Requests whose address starts with q, any case (index request_email_lower)."""
    rows = CertificateRequest.objects.alias(email_lower=Lower("requester_email"))
    return _prefix(rows, "email_lower", q.lower(), "\U0010ffff").values("pk")


def _id_prefix(q: str) -> str | None:
    """q as the start of a request ID (normalized), or None when it cannot be one."""
    cleaned = normalize_public_id(q)
    if MIN_ID_PREFIX <= len(cleaned) < PUBLIC_ID_LENGTH and set(cleaned) <= set(PUBLIC_ID_ALPHABET):
        return cleaned
    return None


def _subject_prefix(q: str) -> QuerySet:
    """Requests whose subject starts with "CN=" and q, any case (index request_subject_lower):
    the CN, which an RFC 4514 subject names first."""
    key = q.lower().removeprefix("cn=").strip()
    rows = CertificateRequest.objects.alias(subject_key=SUBJECT_KEY)
    return _prefix(rows, "subject_key", "cn=" + key, "\U0010ffff").values("pk")


def _matches_anywhere(q: str) -> Q:
    """q in any part of a subject, SAN, address or requester name (a scan of rows)."""
    found = Q(subject__icontains=q) | Q(email_lower__contains=q.lower())
    found |= Q(requester_name__icontains=q)
    if not any(ch in JSON_PUNCTUATION for ch in q):  # the SANs are searched as JSON text
        found |= Q(sans_text__icontains=q)
    return found


def _recent(q: str) -> QuerySet:
    """Among the newest SCAN_WINDOW requests (a range of the request_newest index), those
    with q in any part of a subject, SAN, address or name."""
    newest = CertificateRequest.objects.order_by("-submitted_at", "-pk")
    edge = newest.values_list("submitted_at", flat=True)[SCAN_WINDOW - 1 : SCAN_WINDOW]
    rows = CertificateRequest.objects.alias(
        sans_text=Cast("requested_sans", TextField()), email_lower=Lower("requester_email")
    )
    if edge := list(edge):
        rows = rows.filter(submitted_at__gte=edge[0])
    return rows.filter(_matches_anywhere(q)).values("pk")


def search(rows: QuerySet, q: str) -> QuerySet:
    """rows (requests) that q finds: a whole request ID or serial by its unique index; an
    address or the start of one, the start of a request ID or of a CN by theirs (at most
    MAX_CANDIDATES each); any part of a subject, SAN, address or name among the newest
    SCAN_WINDOW requests."""
    q = q.strip()
    if not q:
        return rows
    if is_public_id(q):
        return rows.filter(public_id=normalize_public_id(q))
    by_serial = Certificate.objects.with_serial(q).values("pk") if is_serial(q) else None
    if by_serial is not None and _looks_like_serial(q):
        return rows.filter(certificate__in=by_serial)
    if "@" in q and not q.startswith("@") and not any(ch.isspace() for ch in q):
        by_email = _email_prefix(q)
        if by_email.exists():  # an address or its start: the index alone
            return rows.filter(pk__in=by_email)
    lookups = [_subject_prefix(q), _recent(q)]
    if by_serial is not None:
        lookups.append(CertificateRequest.objects.filter(certificate__in=by_serial).values("pk"))
    if id_prefix := _id_prefix(q):
        by_id = _prefix(CertificateRequest.objects.all(), "public_id", id_prefix, "~")
        lookups.append(by_id.values("pk"))
    if "@" not in q:
        lookups.append(_email_prefix(q))
    # Each lookup walks its own index; the union is looked up by primary key, so that no
    # planner can prefer walking the whole queue newest-first to find a rare match.
    found: set[int] = set()
    for lookup in lookups:
        found.update(pk for (pk,) in lookup.values_list("pk")[:MAX_CANDIDATES])
    return rows.filter(pk__in=sorted(found))
