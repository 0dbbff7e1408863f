"""What agent pages show of the outbox, without requests_app importing delivery."""

from django import template

from requests_app.links import retrieval_url

from ..models import Delivery

register = template.Library()


@register.inclusion_tag("delivery/_panel.html", takes_context=True)
def delivery_panel(context, certificate, cert_request):
    """Deliveries of a certificate and its request, with the manual send and retry forms."""
    deliveries = Delivery.objects.filter(request=cert_request).select_related("requested_by")
    return {
        "certificate": certificate,
        "cert_request": cert_request,
        "deliveries": deliveries,
        "retrieval_url": retrieval_url(certificate) if certificate else "",
        "next": context["request"].get_full_path(),
        "csrf_token": context.get("csrf_token"),
    }


@register.simple_tag
def bounced_request_ids(requests):
    """IDs of the requests among these with a bounced or failed delivery (one query)."""
    ids = [r.pk for r in requests]
    return set(
        Delivery.objects.filter(
            request_id__in=ids, status__in=[Delivery.Status.BOUNCED, Delivery.Status.FAILED]
        ).values_list("request_id", flat=True)
    )
