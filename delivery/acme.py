"""ACME binding credentials through the outbox: the receiver of
requests_app.acme.credentials.binding_credentials_requested writes one Delivery (kind
acme_credentials, about the binding, to its email), enqueued on commit.

The row holds no key: the acme_credentials backend (delivery/backends/acme.py) reads it
when it builds the message, and refuses, permanently, once the binding has bound its
account or is revoked or expired. A row that cannot be written is refused (DeliveryRefused),
which rolls back the binding the agent was making: the agent sees why, and nothing stays
half done.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from requests_app.acme.credentials import binding_credentials_requested
from requests_app.services import audit

from . import services
from .backends import get_backend
from .models import Delivery

#: The DELIVERY_BACKENDS alias that mails ACME credentials.
ACME_BACKEND = "acme_credentials"


def queue_binding_credentials(binding, *, actor=None) -> Delivery:
    """Write the outbox row that mails a binding's credentials to its requester (in the
    caller's transaction) and enqueue it on commit."""
    try:
        plugin = get_backend(ACME_BACKEND)
    except ImproperlyConfigured as exc:
        raise services.DeliveryRefused(f"the credentials cannot be mailed: {exc}") from None
    kind = Delivery.Kind.ACME_CREDENTIALS
    if kind not in plugin.kinds:
        raise services.DeliveryRefused(f"backend {ACME_BACKEND!r} cannot send {kind!r}")
    recipient = services.clean_recipient(binding.email)
    delivery = Delivery.objects.create(
        request=None,
        acme_binding=binding,
        backend=ACME_BACKEND,
        kind=kind,
        recipient=recipient,
        requested_by=actor,
        next_attempt_at=timezone.now(),
    )
    audit(
        "delivery_queued",
        actor=actor,
        delivery=delivery.pk,
        kind=kind,
        backend=ACME_BACKEND,
        recipient=recipient,
        acme_binding=binding.kid,
    )
    transaction.on_commit(lambda: services.enqueue(delivery.pk))
    return delivery


@receiver(binding_credentials_requested, dispatch_uid="delivery.acme_binding_credentials")
def mail_binding_credentials(sender, *, binding, actor, **kwargs):
    queue_binding_credentials(binding, actor=actor)
