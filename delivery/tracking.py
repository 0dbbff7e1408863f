"""Tracking webhooks of django-anymail: mounted only when mail goes through an ESP and the
webhook secret is set, so nobody else can tell the outbox what happened to a message."""

from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path

ANYMAIL_BACKENDS = "anymail.backends."


def esp_mailers() -> list[str]:
    """The MAILERS aliases that send through an ESP (a django-anymail backend)."""
    return [
        alias
        for alias, config in settings.MAILERS.items()
        if str(config.get("BACKEND", "")).startswith(ANYMAIL_BACKENDS)
    ]


def webhook_secret() -> str:
    return str((getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET", "") or "")


def tracking_enabled() -> bool:
    """True when an ESP sends our mail and its webhooks must authenticate with the secret."""
    return bool(esp_mailers()) and bool(webhook_secret())


def tracking_urlpatterns() -> list[URLPattern | URLResolver]:
    """`anymail/...` when tracking is enabled, else nothing (a forged POST finds no page)."""
    if not tracking_enabled():
        return []
    # Basic auth with ANYMAIL_WEBHOOK_SECRET, checked by anymail on every request.
    return [path("anymail/", include("anymail.urls"))]
