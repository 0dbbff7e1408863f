"""What the agent pages show of the outbox, through requests_app.extensions."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.urls import reverse

from requests_app.links import retrieval_url
from requests_app.models import Certificate, CertificateRequest

from .models import Delivery

PROBLEM_STATUSES = (Delivery.Status.BOUNCED, Delivery.Status.FAILED)
IN_FLIGHT_STATUSES = (Delivery.Status.PENDING, Delivery.Status.SENDING)
#: The extra tag of the messages that the delivery views leave for the panel: the panel
#: shows them, since after a send the page opens at the panel, below the page's messages.
MESSAGE_TAG = "delivery-panel"


def deliveries_context(cert_request: CertificateRequest, *, next_url: str) -> dict:
    """The deliveries table of a request, as the panel and the status fragment show it."""
    deliveries = list(Delivery.objects.filter(request=cert_request).select_related("requested_by"))
    return {
        "cert_request": cert_request,
        "deliveries": deliveries,
        "in_flight": any(d.status in IN_FLIGHT_STATUSES for d in deliveries),
        "next": next_url,
        "status_url": reverse("delivery:status", args=[cert_request.public_id]),
    }


def delivery_panel(
    request: HttpRequest, cert_request: CertificateRequest, certificate: Certificate | None
) -> dict | None:
    """Deliveries of a request, with the manual send and retry forms once it has a certificate."""
    context = deliveries_context(cert_request, next_url=request.get_full_path())
    notes = [m for m in messages.get_messages(request) if MESSAGE_TAG in m.tags.split()]
    # Without a certificate there is nothing to send by hand; the panel appears only to
    # show a failed notification, which the queue marks as a "delivery problem" (or the
    # outcome of a retry).
    problems = any(d.status in PROBLEM_STATUSES for d in context["deliveries"])
    if certificate is None and not problems and not notes:
        return None
    for note in notes:
        note.shown_in_panel = True  # base.html leaves it out of the page's messages
    return context | {
        "certificate": certificate,
        "retrieval_url": retrieval_url(certificate) if certificate else "",
        "notes": notes,
    }


def requests_with_delivery_problems(cert_requests: list[CertificateRequest]) -> set[int]:
    """IDs of the requests among these with a bounced or failed delivery (one query)."""
    return set(
        Delivery.objects.filter(
            request_id__in=[r.pk for r in cert_requests], status__in=PROBLEM_STATUSES
        ).values_list("request_id", flat=True)
    )
