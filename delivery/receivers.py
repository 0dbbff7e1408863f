"""Signal receivers: the Certificate Manager's events become rows in the outbox.

Each runs inside the transaction of the change it reports (the signals are sent there),
so the outbox rows commit or roll back with it; the tasks are enqueued on commit.
"""

from __future__ import annotations

import logging

from anymail.signals import tracking
from django.conf import settings
from django.dispatch import receiver

from requests_app import signals

from . import services
from .models import Delivery

logger = logging.getLogger(__name__)
Kind = Delivery.Kind


@receiver(signals.certificate_issued, dispatch_uid="delivery.certificate_issued")
def deliver_issued_certificate(sender, *, certificate, request, actor, **kwargs):
    for alias in services.automatic_backends(request.profile):
        plugin = services.get_backend(alias)
        kind = Kind.LINK if "link" in plugin.kinds else plugin.kinds[0]
        services.queue_delivery(request=request, certificate=certificate, kind=kind, backend=alias)


def _notify(request, kind, recipients):
    if not settings.DELIVERY_NOTIFICATIONS:
        return
    for recipient in recipients:
        services.queue_delivery(
            request=request, kind=kind, backend=services.NOTIFY_BACKEND, recipient=recipient
        )


@receiver(signals.request_submitted, dispatch_uid="delivery.request_submitted")
def notify_submitted(sender, *, request, actor, **kwargs):
    _notify(request, Kind.REQUEST_RECEIVED, [request.requester_email])
    _notify(request, Kind.REQUEST_WAITING, services.agent_addresses())


@receiver(signals.request_rejected, dispatch_uid="delivery.request_rejected")
def notify_rejected(sender, *, request, reason, actor, **kwargs):
    _notify(request, Kind.REQUEST_REJECTED, [request.requester_email])


@receiver(signals.request_canceled, dispatch_uid="delivery.request_canceled")
def notify_canceled(sender, *, request, actor, **kwargs):
    _notify(request, Kind.REQUEST_CANCELED, [request.requester_email])


@receiver(tracking, dispatch_uid="delivery.anymail_tracking")
def track(sender, *, event, esp_name, **kwargs):
    """Move the matching delivery to delivered or bounced; record each event once."""
    metadata = event.metadata or {}
    event_id = event.event_id or f"{event.message_id}:{event.event_type}:{event.timestamp}"
    services.record_tracking_event(
        provider=esp_name,
        event_id=str(event_id),
        event_type=event.event_type,
        message_id=event.message_id or "",
        delivery_id=metadata.get("delivery_id"),
        recipient=event.recipient or "",
        description=event.description or event.mta_response or "",
        occurred_at=event.timestamp,
    )


@receiver(signals.certificate_revoked, dispatch_uid="delivery.certificate_revoked")
def notify_revoked(sender, *, certificate, reason, actor, **kwargs):
    """Tell the holder (the requester) that their certificate was revoked, or released."""
    request = certificate.issued_request
    if request is None or not settings.DELIVERY_NOTIFICATIONS:
        return  # an imported or command-issued certificate with no request has no address
    services.queue_delivery(
        request=request,
        certificate=certificate,
        kind=Kind.CERTIFICATE_REVOKED,
        backend=services.NOTIFY_BACKEND,
        recipient=request.requester_email,
        actor=actor,
    )
