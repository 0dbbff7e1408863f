"""Manual delivery on the agent pages: send a certificate by hand, send a delivery now or
retry it, and the deliveries table's status for the panel's live updates."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from requests_app import pki
from requests_app.httputil import agent_required
from requests_app.models import CertificateRequest, is_serial
from requests_app.views.common import find_certificate

from . import panels, services
from .models import Delivery

Status = Delivery.Status
ANCHOR = "#delivery"


def _safe_next(request, value: str) -> str | None:
    if value and url_has_allowed_host_and_scheme(value, {request.get_host()}, request.is_secure()):
        return value
    return None


def _back(request, fallback: str):
    """To the page the form came from (or fallback), opened at the delivery panel."""
    target = _safe_next(request, request.POST.get("next", "")) or fallback
    return redirect(target if "#" in target else target + ANCHOR)


def _outcome(delivery: Delivery) -> tuple[int, str]:
    """What became of a delivery an agent just sent, in words, with its message level."""
    what = f"{delivery.get_kind_display()} to {delivery.recipient}"
    if delivery.status in (Status.SENT, Status.DELIVERED):
        return messages.SUCCESS, f"Sent {what}."
    if delivery.status in (Status.FAILED, Status.BOUNCED):
        reason = delivery.last_error or "no reason was given"
        return messages.ERROR, f"Could not send {what}: {reason}. It will not be tried again."
    waits = delivery.next_attempt_at and delivery.next_attempt_at > timezone.now()
    if delivery.status == Status.PENDING and delivery.last_error and waits:
        at = timezone.localtime(delivery.next_attempt_at).strftime("%H:%M:%S %Z")
        return (
            messages.WARNING,
            f"Not sent yet: {what} failed ({delivery.last_error}). It is tried again at "
            f"{at}; Send now tries at once.",
        )
    return messages.INFO, f"Sending {what} now; its status below changes by itself."


def _report(request, delivery: Delivery, *, tag: str = panels.MESSAGE_TAG) -> None:
    delivery.refresh_from_db()
    level, text = _outcome(delivery)
    messages.add_message(request, level, text, extra_tags=tag)


@agent_required
@require_POST
def send(request, serial: str):
    """Email the certificate, or a retrieval link, to the requester or another address."""
    cert = find_certificate(serial)
    if cert is None:
        shown = pki.serial_colons(serial) if is_serial(serial) else serial
        messages.error(request, f"No certificate has the serial number {shown}.")
        return redirect("agent:request_list")
    req = cert.issued_request
    fallback = req.get_agent_url() if req else reverse("agent:request_list")
    try:
        delivery = services.send_certificate(
            cert,
            method=request.POST.get("method", ""),
            to=request.POST.get("to", "").strip() or None,
            note=request.POST.get("note", ""),
            actor=request.user,
        )
    except services.ServiceError as exc:
        messages.error(request, f"Not sent: {exc.message}", extra_tags=panels.MESSAGE_TAG)
        return _back(request, fallback)
    _report(request, delivery)
    return _back(request, fallback)


@agent_required
@require_POST
def retry(request, public_id: str):
    """Send a pending delivery now, or retry a failed or bounced one."""
    delivery = get_object_or_404(Delivery.objects.select_related("request"), public_id=public_id)
    # An ACME binding's credentials belong to no request, and their page has no panel.
    tag = panels.MESSAGE_TAG if delivery.request else ""
    try:
        services.retry_delivery(delivery.pk, actor=request.user)
    except services.ServiceError as exc:
        messages.error(request, f"Not sent: {exc.message}.", extra_tags=tag)
    else:
        _report(request, delivery, tag=tag)
    if delivery.request is None:
        return redirect(_safe_next(request, request.POST.get("next", "")) or "agent:acme_accounts")
    return _back(request, delivery.request.get_agent_url())


@agent_required
@require_safe
@never_cache
def status(request, public_id: str):
    """The deliveries table of a request, which the panel's script polls while any is pending."""
    cert_request = get_object_or_404(CertificateRequest, public_id=public_id)
    next_url = _safe_next(request, request.GET.get("next", "")) or cert_request.get_agent_url()
    context = panels.deliveries_context(cert_request, next_url=next_url)
    return render(request, "delivery/_deliveries.html", context)
