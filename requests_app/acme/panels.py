"""The agent pages' ACME parts: the request page's panel (the account, its binding and the
validated challenges) and the queue's "ACME" mark."""

from __future__ import annotations

from ..extensions import register_agent_panel, register_queue_mark


def _context(request, cert_request, certificate):
    from .models import Order

    if cert_request.channel != "acme":
        return None
    order = (
        Order.objects.select_related("account", "account__binding")
        .filter(request=cert_request)
        .first()
    )
    if order is None:
        return None
    authorizations = list(order.authorizations.prefetch_related("challenges"))
    binding = getattr(order.account, "binding", None)
    return {
        "order": order,
        "account": order.account,
        "binding": binding,
        "authorizations": authorizations,
    }


def _acme_requests(cert_requests) -> list[int]:
    return [req.pk for req in cert_requests if req.channel == "acme"]  # no query at all


def register() -> None:
    register_agent_panel("acme", template="acme/agent_panel.html", context=_context)
    register_queue_mark("acme", template="acme/queue_mark.html", mark=_acme_requests)
