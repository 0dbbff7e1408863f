"""Extension points: how other apps add to the Certificate Manager without it importing them.

requests_app never imports the apps that extend it (delivery is one); they fill these
registries from their `AppConfig.ready()`, and the pages and the admin read them.

1. Agent page panels, `register_agent_panel(name, template=..., context=...)`.
   A panel is a section of the agent's request details and certificate-issued pages.
   `context(request, cert_request, certificate)` returns the template's context, or None
   when the panel has nothing to show for that request (`certificate` may be None).
   The template is rendered with the page's request, so `csrf_token` is available.
   The pages put the rendered panels in their context as `panels`, in registration order.

2. Agent queue row marks, `register_queue_mark(name, template=..., mark=...)`.
   `mark(cert_requests)` gets the requests on one page of the queue and returns the IDs
   (primary keys) of those to mark; it must answer in one query, whatever the page size.
   The template is rendered for each marked row with `req` in its context; the queue shows
   each row's marks (`req.queue_marks`) after its status, so the template should be one
   inline element with no trailing newline.

3. Certificate admin actions, `register_certificate_admin_action(action)`.
   An admin action function `action(modeladmin, request, queryset)`, usually decorated with
   `@admin.action(description=..., permissions=[...])`; its `__name__` is its name in the
   admin's action menu. CertificateAdmin offers its own actions and then these.

4. Health checks, `register_health_check(name, check)`.
   `check()` returns None when this node is fine in that respect, or a short text saying what
   is wrong (meant for operators; /healthz decides who may see it). It must be cheap (a load
   balancer calls /healthz every few seconds) and never raise: an exception counts as failing.

Registering a name again replaces the earlier entry, so a second `ready()` (tests) is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .models import Certificate, CertificateRequest

PanelContext = Callable[
    ["HttpRequest", "CertificateRequest", "Certificate | None"], "dict[str, Any] | None"
]
QueueMarker = Callable[["list[CertificateRequest]"], "Iterable[int]"]


@dataclass(frozen=True)
class AgentPanel:
    name: str
    template: str
    context: PanelContext


@dataclass(frozen=True)
class QueueMark:
    name: str
    template: str
    mark: QueueMarker


_agent_panels: dict[str, AgentPanel] = {}
_queue_marks: dict[str, QueueMark] = {}
_certificate_admin_actions: dict[str, Callable] = {}
_health_checks: dict[str, Callable[[], str | None]] = {}


def register_agent_panel(name: str, *, template: str, context: PanelContext) -> None:
    """Show a panel, rendered from template with context(...), on the agent request pages."""
    _agent_panels[name] = AgentPanel(name, template, context)


def register_queue_mark(name: str, *, template: str, mark: QueueMarker) -> None:
    """Mark the agent queue's rows whose IDs mark(requests) returns, with template."""
    _queue_marks[name] = QueueMark(name, template, mark)


def register_certificate_admin_action(action: Callable) -> Callable:
    """Offer an admin action on certificates; returns it, so it also works as a decorator."""
    _certificate_admin_actions[action.__name__] = action
    return action


def certificate_admin_actions() -> list[Callable]:
    """The certificate admin actions other apps registered, in registration order."""
    return list(_certificate_admin_actions.values())


def render_agent_panels(
    request: HttpRequest,
    cert_request: CertificateRequest,
    certificate: Certificate | None,
) -> list[SafeString]:
    """The registered panels that have something to show for this request, rendered."""
    rendered = []
    for panel in _agent_panels.values():
        context = panel.context(request, cert_request, certificate)
        if context is not None:
            rendered.append(render_to_string(panel.template, context, request))
    return rendered


def mark_queue_rows(cert_requests: list[CertificateRequest]) -> None:
    """Set `queue_marks` on each request of a queue page: its rendered row marks."""
    for req in cert_requests:
        req.queue_marks = []
    if not cert_requests:
        return
    for queue_mark in _queue_marks.values():
        marked = set(queue_mark.mark(cert_requests))
        for req in cert_requests:
            if req.pk in marked:
                req.queue_marks.append(render_to_string(queue_mark.template, {"req": req}))


def register_health_check(name: str, check: Callable[[], str | None]) -> None:
    """Make /healthz also ask check(): None when fine, else what is wrong."""
    _health_checks[name] = check


def run_health_checks() -> dict[str, str | None]:
    """Each registered check's answer (None: fine), in registration order."""
    results = {}
    for name, check in _health_checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # a broken check is a failing one, never a 500
            results[name] = f"check failed: {type(exc).__name__}"
    return results
