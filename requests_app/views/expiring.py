"""The agents' Expiring page: certificates that lapse in the next 7, 30 or 90 days."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from .. import expiry, paging, profiles
from ..forms import ExpiringFilterForm
from ..httputil import agent_required

PAGE_SIZE = 50


@agent_required
@require_safe
def expiring(request: HttpRequest) -> HttpResponse:
    form = ExpiringFilterForm(request.GET)
    form.is_valid()  # a bad value is shown on the form; the valid filters still apply
    filters = form.cleaned_data
    within = filters.get("within") or 30
    now = timezone.now()
    rows = expiry.expiring(
        now=now, within_days=within, profile=filters.get("profile") or None, q=filters.get("q")
    )
    # Paged without a count: a page fetches one row more than it shows.
    page = paging.CountFreePaginator(rows, PAGE_SIZE).look_ahead_page(request.GET.get("page"))
    labels = {p.name: p.label for p in profiles.all_profiles(enabled_only=False)}
    for cert in page.object_list:
        req = cert.issued_request
        cert.profile_label = labels.get(cert.profile, cert.profile)
        cert.holder = req.requester_email if req else ""
        cert.renewal_method = expiry.renewal_method(req.channel if req else None)
        cert.renewal_label = expiry.RenewalMethod.LABELS[cert.renewal_method]
        cert.days_left = (cert.not_after - now).days
    return render(
        request,
        "agent/expiring.html",
        {
            "form": form,
            "certificates": page.object_list,
            "within": within,
            "windows": expiry.WINDOWS,
            "page": page.number,
            "has_previous": page.has_previous(),
            "has_next": page.has_next(),
        },
    )
