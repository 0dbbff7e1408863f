"""Signal receivers: the Certificate Manager's events become rows in the outbox.

Each runs inside the transaction of the change it reports (the signals are sent there),
so the outbox rows commit or roll back with it; the tasks are enqueued on commit.

A receiver never undoes the change it reports. It only writes outbox rows, each in its
own savepoint: a fault (an alias gone from DELIVERY_BACKENDS, a plugin raising, a bad
recipient, a database error) rolls back that row alone and becomes a failed Delivery
with the reason, which the agent sees on the request page, and a log line. Whatever
escapes that is logged and goes no further.
"""

from __future__ import annotations

import functools
import logging

from anymail.signals import tracking
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.dispatch import receiver

from requests_app import signals

from . import services
from .models import Delivery
from .tracking import record_tracking_event

logger = logging.getLogger(__name__)
Kind = Delivery.Kind


def _never_raises(receiver_function):
    """Log what escapes a receiver instead of raising it into the change it reports.

    No savepoint here: every write a receiver makes has its own (in _queue), so a database
    error rolls back that write alone, and a receiver with nothing to queue (a request
    without an address under a policy that sends nothing) costs the approval no SAVEPOINT
    round trips."""

    @functools.wraps(receiver_function)
    def guarded(sender, **kwargs):
        try:
            receiver_function(sender, **kwargs)
        except Exception:
            logger.exception(
                "delivery receiver %s failed; the change it reports stands",
                receiver_function.__name__,
            )

    return guarded


def _queue(
    *,
    request,
    backend: str,
    kind: str | None,
    recipient: str | None = None,
    certificate=None,
    actor=None,
) -> None:
    """Queue one delivery; a fault becomes a failed Delivery row and a log line instead."""
    try:
        with transaction.atomic():
            # Resolved first, so that a failure after it is recorded with what it resolved.
            kind, recipient = services.resolve_delivery(
                request=request,
                kind=kind,
                backend=backend,
                recipient=recipient,
                certificate=certificate,
            )
            services.queue_delivery(
                request=request,
                kind=kind,
                backend=backend,
                recipient=recipient,
                certificate=certificate,
                actor=actor,
            )
    except Exception as exc:
        logger.exception(
            "could not queue a %s delivery by %r for request %s",
            kind or "automatic",
            backend,
            request.pk,
        )
        reason = (
            exc.message
            if isinstance(exc, services.ServiceError)
            else f"{type(exc).__name__}: {exc}"
        )
        # In a savepoint of its own too: if even the failed row cannot be written, the
        # guard logs it and the change the receiver reports still commits.
        with transaction.atomic():
            services.record_unqueued_delivery(
                request=request,
                certificate=certificate,
                # An automatic delivery whose backend cannot be asked its kind delivers the
                # certificate one way or another; "the certificate" is the honest label.
                kind=kind or Kind.CERTIFICATE,
                backend=backend,
                recipient=_clean_or_blank(recipient),
                error=f"not queued: {reason}",
                actor=actor,
            )


def _clean_or_blank(recipient: str | None) -> str:
    """The recipient if it is valid, else blank, so a retry never sends to a refused one."""
    if not recipient:
        return ""
    try:
        return services.clean_recipient(
            recipient, url=recipient.startswith(("http://", "https://"))
        )
    except services.DeliveryRefused:
        return ""


@receiver(signals.certificate_issued, dispatch_uid="delivery.certificate_issued")
@_never_raises
def deliver_issued_certificate(sender, *, certificate, request, actor, **kwargs):
    aliases = services.automatic_backends(request.profile)
    for alias in aliases:
        _queue(request=request, certificate=certificate, kind=None, backend=alias)
    # Everyone who gave an address hears that the certificate is ready, also where the
    # policy sends it elsewhere (a webhook) or nowhere (the server profile by default).
    if services.needs_ready_mail(request, certificate, aliases):
        _queue(
            request=request,
            certificate=certificate,
            kind=Kind.LINK,
            backend=services.READY_BACKEND,
            recipient=request.requester_email,
        )


def _notify(request, kind, recipients):
    if not settings.DELIVERY_NOTIFICATIONS:
        return
    for recipient in recipients:
        _queue(request=request, kind=kind, backend=services.NOTIFY_BACKEND, recipient=recipient)


@receiver(signals.request_submitted, dispatch_uid="delivery.request_submitted")
@_never_raises
def notify_submitted(sender, *, request, actor, **kwargs):
    _notify(request, Kind.REQUEST_RECEIVED, [request.requester_email])
    _notify(request, Kind.REQUEST_WAITING, services.agent_addresses())


@receiver(signals.email_confirmation_requested, dispatch_uid="delivery.email_confirmation")
@_never_raises
def mail_confirmation_code(sender, *, request, actor, **kwargs):
    """The code that proves the mailbox. Sent whatever DELIVERY_NOTIFICATIONS says: without
    it the request never reaches an agent. The code is made when the mail is built."""
    _queue(
        request=request,
        kind=Kind.EMAIL_CONFIRMATION,
        backend=services.NOTIFY_BACKEND,
        recipient=request.requester_email,
    )


@receiver(signals.request_rejected, dispatch_uid="delivery.request_rejected")
@_never_raises
def notify_rejected(sender, *, request, reason, actor, **kwargs):
    _notify(request, Kind.REQUEST_REJECTED, [request.requester_email])


@receiver(signals.request_canceled, dispatch_uid="delivery.request_canceled")
@_never_raises
def notify_canceled(sender, *, request, actor, **kwargs):
    _notify(request, Kind.REQUEST_CANCELED, [request.requester_email])


@receiver(tracking, dispatch_uid="delivery.anymail_tracking")
def track(sender, *, event, esp_name, **kwargs):
    """Record the event of one of our sent messages once, matched by the provider's message
    ID only (the body's metadata is not trusted); delivered and bounced end a sent delivery."""
    event_id = event.event_id or f"{event.message_id}:{event.event_type}:{event.timestamp}"
    record_tracking_event(
        provider=esp_name,
        event_id=str(event_id),
        event_type=event.event_type,
        message_id=event.message_id or "",
        recipient=event.recipient or "",
        description=event.description or event.mta_response or "",
        occurred_at=event.timestamp,
    )


@receiver(signals.certificate_revoked, dispatch_uid="delivery.certificate_revoked")
@_never_raises
def notify_revoked(sender, *, certificate, reason, actor, **kwargs):
    """Tell the holder (the requester) that their certificate was revoked, or released."""
    request = certificate.issued_request
    if request is None or not settings.DELIVERY_NOTIFICATIONS:
        return  # an imported or command-issued certificate with no request has no address
    _queue(
        request=request,
        certificate=certificate,
        kind=Kind.CERTIFICATE_REVOKED,
        backend=services.NOTIFY_BACKEND,
        recipient=request.requester_email,
        actor=actor,
    )


@receiver(signals.agent_access_changed, dispatch_uid="delivery.agent_access_changed")
@_never_raises
def notify_agent_access(sender, *, users, granted, via, actor, **kwargs):
    """Tell the other agents, on commit, that someone gained or lost the agents' access.

    Sent straight through the default mailer, not the outbox: a Delivery row belongs to a
    certificate request, and this notice has none (it is logged if it cannot be sent)."""
    if not settings.DELIVERY_NOTIFICATIONS:
        return
    affected = {user.email.lower() for user in users if user.email}
    recipients = [a for a in services.agent_addresses() if a.lower() not in affected]
    if not recipients:
        return
    names = ", ".join(user.get_username() for user in users)
    by = actor.get_username() if actor is not None else "system"
    change = "became" if granted else "is no longer"
    subject = f"[ca-portal] {names} {change} a Certificate Manager agent"
    body = (
        f"{names} {change} a Certificate Manager agent (through {via}).\n"
        f"Changed by: {by}.\n\n"
        "If you did not expect this, check the user's account and the audit log now.\n"
    )
    transaction.on_commit(lambda: _send_notice(subject, body, recipients))


def _send_notice(subject: str, body: str, recipients: list[str]) -> None:
    for recipient in recipients:  # one message each: agents do not see each other's address
        try:
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient]).send()
        except Exception:
            logger.exception("could not send the agent access notice to %s", recipient)
