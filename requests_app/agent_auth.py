"""How an agent's session proves more than a password: the one place that records and asks
whether this session passed a second factor (a one-time code, a passkey, a recovery code) or
logged in with an agent certificate, which counts as both factors.

Every agent surface asks `is_verified(request)`; every login path that proves a second factor
calls `mark_verified(request, method)` after `django.contrib.auth.login` (which cycles the
session key, so the mark cannot be planted before login)."""

from __future__ import annotations

from django.http import HttpRequest

#: The session key holding how this session passed the second factor ("totp", "webauthn",
#: "recovery", "certificate") and for which user; absent until it has.
SESSION_KEY = "agent_second_factor"

METHODS = ("totp", "webauthn", "recovery", "certificate")


def mark_verified(request: HttpRequest, method: str) -> None:
    """Record that this (already logged-in) session passed the second factor by `method`."""
    if method not in METHODS:
        raise ValueError(f"unknown second-factor method {method!r}")
    if not request.user.is_authenticated:
        raise ValueError("log the user in before marking the session verified")
    request.session[SESSION_KEY] = {"user": request.user.pk, "method": method}


def verified_by(request: HttpRequest) -> str | None:
    """How this session passed the second factor, or None if it has not."""
    if not request.user.is_authenticated:
        return None
    mark = request.session.get(SESSION_KEY)
    if not isinstance(mark, dict) or mark.get("user") != request.user.pk:
        return None  # absent, malformed, or left over from another account
    return mark.get("method") if mark.get("method") in METHODS else None


def is_verified(request: HttpRequest) -> bool:
    return verified_by(request) is not None
