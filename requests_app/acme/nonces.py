"""Replay nonces (RFC 8555 6.5): made by the server, kept in the database, used once."""

from __future__ import annotations

import datetime as dt
import secrets

import josepy as jose
from django.utils import timezone

from .models import Nonce

#: A nonce not used within this time is forgotten (the client gets badNonce and retries).
NONCE_LIFETIME = dt.timedelta(hours=1)


def new() -> str:
    """A fresh nonce (16 random bytes, base64url); now and then the expired ones are swept."""
    value = secrets.token_urlsafe(16)
    Nonce.objects.create(value=value)
    if secrets.randbelow(100) == 0:
        Nonce.objects.filter(created_at__lt=timezone.now() - NONCE_LIFETIME).delete()
    return value


def use(raw: bytes) -> bool:
    """True exactly once for a nonce the server made (within its lifetime)."""
    if not isinstance(raw, bytes):
        return False
    value = jose.encode_b64jose(raw)  # josepy decoded the header's base64url
    cutoff = timezone.now() - NONCE_LIFETIME
    deleted, _ = Nonce.objects.filter(value=value, created_at__gte=cutoff).delete()
    return deleted == 1
