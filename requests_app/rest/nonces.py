"""The review's nonce, as Dogtag's: an action must echo the nonce of the review it follows.
Kept in the cache (shared between processes), bound to the agent and to the request or
certificate reviewed; a new review replaces the earlier nonce, and each is used once
(`cache.add` of its "used" mark is atomic, so two actions with one nonce cannot both pass)."""

from __future__ import annotations

import hashlib
import secrets

from django.core.cache import cache
from django.utils.crypto import constant_time_compare

from .errors import RestError

#: How long a review's nonce may wait for its action (seconds).
NONCE_SECONDS = 30 * 60


def _key(user, kind: str, target: str) -> str:
    return f"rest-nonce:{user.pk}:{kind}:{target}"


def issue(user, kind: str, target: str) -> int:
    """A fresh nonce for this agent's review of `target` (a Java long, as Dogtag's)."""
    nonce = secrets.randbits(63) * (1 if secrets.randbits(1) else -1)
    cache.set(_key(user, kind, target), str(nonce), NONCE_SECONDS)
    return nonce


def consume(user, kind: str, target: str, sent, *, shown: str) -> None:
    """Accept the nonce once, or refuse as Dogtag does: missing 400, unknown or used 400,
    another review's 403."""
    if sent is None or sent == "":
        raise RestError("BadRequest", "Missing nonce.")
    if isinstance(sent, (dict, list, bool)) or len(str(sent)) > 40:
        raise RestError("BadRequest", "The nonce must be the review's number")
    expected = cache.get(_key(user, kind, target))
    if expected is None:
        raise RestError("BadRequest", f"Nonce for {kind} {shown} does not exist")
    if not constant_time_compare(str(sent), expected):
        raise RestError("Forbidden", f"Invalid nonce: {str(sent)[:40]}")
    used = "rest-nonce-used:" + hashlib.sha256(f"{user.pk}:{expected}".encode()).hexdigest()
    if not cache.add(used, 1, NONCE_SECONDS):
        raise RestError("BadRequest", f"Nonce for {kind} {shown} does not exist")
