"""The agent request page's ACME panel: the account and the validated challenges."""

from __future__ import annotations

from ..extensions import register_agent_panel


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


def register() -> None:
    register_agent_panel("acme", template="acme/agent_panel.html", context=_context)
