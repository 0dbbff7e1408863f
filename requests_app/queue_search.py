"""The agent queue's one search box: request IDs, certificate serials, requester emails,
subjects and SANs, typed the way people copy them.

Reads only. A whole request ID or serial is a lookup in its unique index (and the queue
jumps to it); an address, the start of one, or the start of a request ID walks an index
range (request_email_lower, the public_id unique index). Only free text (part of a
subject, a SAN, a domain) is matched along the queue's newest-first order, which stops as
soon as a page is full.
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
    is_public_id,
    is_serial,
    normalize_public_id,
)

#: The start of a request ID must be this long to be looked up as one ("ABCD").
MIN_ID_PREFIX = 4
#: A serial is looked up on its own (no free-text match) from this many characters; real
#: serials are ~40 hex digits, and short hex ("cafe", "added") may be a word.
MIN_SERIAL_LENGTH = 16

#: What a SAN never holds but the JSON text of the list of SANs does.
JSON_PUNCTUATION = frozenset('"[],\\')

#: What the box searches, for the page's hint and its "nothing found" sentence.
SEARCHED = "request IDs, certificate serials, requester emails, subjects and SANs"


def _looks_like_serial(q: str) -> bool:
    return is_serial(q) and sum(ch.isalnum() for ch in q) >= MIN_SERIAL_LENGTH


def exact_match_url(q: str) -> str | None:
    """The agent page of what q names exactly, a request ID or a certificate serial (the
    request it answered, else the certificate), or None."""
    q = q.strip()
    if is_public_id(q):
        req = CertificateRequest.objects.by_public_id(q)
        if req is not None:
            return req.get_agent_url()
    if _looks_like_serial(q):
        cert = Certificate.objects.select_related("request").with_serial(q).first()
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


def search(rows: QuerySet, q: str) -> QuerySet:
    """rows (requests) that q finds: by request ID, serial, address, subject or SAN."""
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
    found = (
        Q(subject__icontains=q)
        | Q(email_lower__contains=q.lower())
        | Q(requester_name__icontains=q)
    )
    if not any(ch in JSON_PUNCTUATION for ch in q):  # the SANs are searched as JSON text
        found |= Q(sans_text__icontains=q)
    if by_serial is not None:
        found |= Q(certificate__in=by_serial)
    id_prefix = _id_prefix(q)
    if id_prefix:
        by_id = _prefix(CertificateRequest.objects.all(), "public_id", id_prefix, "~")
        found |= Q(pk__in=by_id.values("pk"))
    return rows.alias(
        sans_text=Cast("requested_sans", TextField()), email_lower=Lower("requester_email")
    ).filter(found)
