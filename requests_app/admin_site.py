"""The Django admin behind the second factor: one check in front of every admin view (pages,
actions, autocomplete, the catch-all), so no ModelAdmin or action can forget it."""

from __future__ import annotations

from functools import wraps

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.urls import reverse
from django.views.decorators.csrf import csrf_protect

from .httputil import lacks_second_factor, second_factor_refusal


class AgentAdminSite(admin.AdminSite):
    """Django's AdminSite; a logged-in session that owes the second factor is sent to the
    second-factor page (GET) or refused with 403 (POST), before any admin view runs."""

    site_header = "ca-portal Certificate Manager"
    site_title = "ca-portal Certificate Manager"
    index_title = "Certificate Manager administration"
    # Four models: the breadcrumbs and the index reach them; the lists need the width.
    enable_nav_sidebar = False

    def _owes_second_factor(self, request: HttpRequest) -> bool:
        user = request.user
        return user.is_active and user.is_staff and lacks_second_factor(request)

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and not lacks_second_factor(request)

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def guarded(request: HttpRequest, *args, **kwargs):
            if self._owes_second_factor(request):
                if request.path == reverse("admin:logout", current_app=self.name):
                    return csrf_protect(view)(request, *args, **kwargs)  # leaving is allowed
                return second_factor_refusal(request)
            return inner(request, *args, **kwargs)

        return guarded

    def login(self, request: HttpRequest, extra_context=None):
        # A staff user who has the password behind them but not the second factor goes on
        # to the second-factor page instead of being asked for the password again.
        if self._owes_second_factor(request):
            if request.method in ("GET", "HEAD"):
                return redirect_to_login(
                    request.GET.get("next") or reverse("admin:index", current_app=self.name),
                    reverse("agent_verify"),
                )
            return second_factor_refusal(request)
        return super().login(request, extra_context)
