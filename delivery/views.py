"""Manual delivery on the agent pages: send a certificate by hand, retry a delivery."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from requests_app import pki
from requests_app.httputil import agent_required
from requests_app.models import is_serial
from requests_app.views.common import find_certificate

from . import services
from .models import Delivery


def _back(request, fallback: str):
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(fallback)


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
    fallback = req.get_agent_url() if req else "agent:request_list"
    try:
        delivery = services.send_certificate(
            cert,
            method=request.POST.get("method", ""),
            to=request.POST.get("to", "").strip() or None,
            note=request.POST.get("note", ""),
            actor=request.user,
        )
    except services.ServiceError as exc:
        messages.error(request, f"Not sent: {exc.message}")
        return _back(request, fallback)
    delivery.refresh_from_db()
    messages.success(
        request,
        f"Queued {delivery.get_kind_display()} to {delivery.recipient} ({delivery.status}).",
    )
    return _back(request, fallback)


@agent_required
@require_POST
def retry(request, public_id: str):
    """Put a failed or bounced delivery back in the queue."""
    delivery = get_object_or_404(Delivery.objects.select_related("request"), public_id=public_id)
    try:
        services.retry_delivery(delivery.pk, actor=request.user)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        delivery.refresh_from_db()
        messages.success(request, f"Retried delivery to {delivery.recipient}: {delivery.status}.")
    if delivery.request is None:  # an ACME binding's credentials belong to no request
        return _back(request, reverse("agent:acme_accounts"))
    return _back(request, delivery.request.get_agent_url())
