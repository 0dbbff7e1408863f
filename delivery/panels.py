"""What the agent pages show of the outbox, through requests_app.extensions."""

from __future__ import annotations

from django.http import HttpRequest

from requests_app.links import retrieval_url
from requests_app.models import Certificate, CertificateRequest

from .models import Delivery

PROBLEM_STATUSES = (Delivery.Status.BOUNCED, Delivery.Status.FAILED)


def delivery_panel(
    request: HttpRequest, cert_request: CertificateRequest, certificate: Certificate | None
) -> dict | None:
    """Deliveries of a request, with the manual send and retry forms once it has a certificate."""
    deliveries = list(Delivery.objects.filter(request=cert_request).select_related("requested_by"))
    # Without a certificate there is nothing to send by hand; the panel appears only to
    # show a failed notification, which the queue marks as a "delivery problem".
    if certificate is None and not any(d.status in PROBLEM_STATUSES for d in deliveries):
        return None
    return {
        "certificate": certificate,
        "cert_request": cert_request,
        "deliveries": deliveries,
        "retrieval_url": retrieval_url(certificate) if certificate else "",
        "next": request.get_full_path(),
    }


def requests_with_delivery_problems(cert_requests: list[CertificateRequest]) -> set[int]:
    """IDs of the requests among these with a bounced or failed delivery (one query)."""
    return set(
        Delivery.objects.filter(
            request_id__in=[r.pk for r in cert_requests], status__in=PROBLEM_STATUSES
        ).values_list("request_id", flat=True)
    )
