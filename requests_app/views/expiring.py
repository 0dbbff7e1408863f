"""The agents' Expiring page: certificates that lapse in the next 7, 30 or 90 days."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from .. import expiry, profiles
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
    after = None
    if request.GET.get("after"):
        try:
            after = expiry.decode_cursor(request.GET["after"])
        except expiry.BadCursor as exc:
            return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    now = timezone.now()
    rows = expiry.expiring(
        now=now,
        within_days=within,
        profile=filters.get("profile") or None,
        q=filters.get("q"),
        after=after,
    )
    # Keyset paging, no count and no OFFSET: a page is the rows after the cursor (the last
    # row's not_after and id), one more fetched to learn whether another follows.
    certificates = list(rows[: PAGE_SIZE + 1])
    has_next = len(certificates) > PAGE_SIZE
    certificates = certificates[:PAGE_SIZE]
    next_cursor = (
        expiry.encode_cursor(certificates[-1].not_after, certificates[-1].pk) if has_next else ""
    )
    labels = {p.name: p.label for p in profiles.all_profiles(enabled_only=False)}
    for cert in certificates:
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
            "certificates": certificates,
            "within": within,
            "windows": expiry.WINDOWS,
            "is_first_page": after is None,
            "next_cursor": next_cursor,
        },
    )
