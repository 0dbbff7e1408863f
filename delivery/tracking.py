"""Tracking webhooks of django-anymail: mounted only when mail goes through an ESP and the
webhook secret is set, so nobody else can tell the outbox what happened to a message; and
what an event may change (`record_tracking_event`, which delivery/receivers.py calls)."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import URLPattern, URLResolver, include, path
from django.utils import timezone

from requests_app.services import audit

from .models import Delivery, DeliveryEvent

logger = logging.getLogger(__name__)
Status = Delivery.Status

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


#: Tracking events that end a sent delivery, and the status each gives it.
TRACKING_STATUS = {
    "delivered": Status.DELIVERED,
    "bounced": Status.BOUNCED,
    "rejected": Status.BOUNCED,
    "failed": Status.BOUNCED,
}


def record_tracking_event(
    *,
    provider: str,
    event_id: str,
    event_type: str,
    message_id: str = "",
    recipient: str = "",
    description: str = "",
    occurred_at: dt.datetime | None = None,
) -> DeliveryEvent | None:
    """Record a provider's event for one of our sent messages, once (a replay changes
    nothing); a delivered or bounce event moves a `sent` delivery to delivered or bounced.

    The delivery is found only by the provider's message ID that its send returned, never
    by anything else the event body says (metadata is the sender's to choose). An event
    for a message we never sent is logged and ignored; one for a delivery that is not
    `sent` (pending, already delivered or bounced, retried) is recorded and moves nothing."""
    deliveries = (
        list(Delivery.objects.filter(message_id=message_id)[:2])
        if message_id and len(message_id) <= 255
        else []
    )
    if len(deliveries) != 1:
        logger.warning(
            "ignored a %s %r event for message %r: no delivery of ours was sent as that",
            provider,
            event_type,
            message_id,
        )
        return None
    delivery = deliveries[0]
    try:
        with transaction.atomic():
            event = DeliveryEvent.objects.create(
                delivery=delivery,
                provider=provider[:64],
                event_id=event_id[:255],
                event_type=event_type[:32],
                message_id=message_id,
                recipient=(recipient or "")[:254],
                description=(description or "")[:2000],
                occurred_at=occurred_at,
            )
            new_status = TRACKING_STATUS.get(event_type)
            moved = new_status is not None and (
                Delivery.objects.filter(pk=delivery.pk, status=Status.SENT).update(
                    status=new_status,
                    last_error=(description or "")[:2000] if new_status == Status.BOUNCED else "",
                    updated=timezone.now(),
                )
                == 1
            )
            if moved:
                audit(
                    f"delivery_{new_status}",
                    actor=None,
                    request=delivery.request,
                    certificate=delivery.certificate,
                    delivery=delivery.pk,
                    provider=provider,
                    event_id=event_id,
                )
            elif new_status is not None:
                logger.info(
                    "%s %r event for delivery %s, which is %s (not sent): recorded, not applied",
                    provider,
                    event_type,
                    delivery.public_id,
                    delivery.status,
                )
    except IntegrityError:
        return None  # already recorded: a replayed event changes nothing
    return event
