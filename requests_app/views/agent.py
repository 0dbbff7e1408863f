"""Agent pages: the request queue, request details and decisions, the issued certificate."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from .. import audit_text, expiry, extensions, paging, pki, profiles, queue_search, services
from ..forms import ApproveForm, CancelForm, RejectForm, RequestFilterForm
from ..httputil import agent_required, client_ip
from ..models import CertificateRequest
from ..pki import describe_certificate
from .common import find_request

PAGE_SIZE = 50


def _get_request(public_id: str) -> CertificateRequest:
    req = find_request(public_id)
    if req is None:
        raise Http404("No request has that ID.")
    return req


@agent_required
@require_safe
def request_list(request: HttpRequest) -> HttpResponse:
    form = RequestFilterForm(request.GET)
    form.is_valid()  # a bad value is shown on the form; the valid filters still apply
    filters = form.cleaned_data
    rows = CertificateRequest.objects.select_related("certificate").defer(
        "csr_pem", "certificate__pem"
    )
    if filters.get("status"):
        rows = rows.filter(status=filters["status"])
    else:  # a request whose address is not yet proved is no agent's business
        rows = rows.exclude(status__in=CertificateRequest.NOT_IN_QUEUE)
    if filters.get("profile"):
        rows = rows.filter(profile=filters["profile"])
    q = filters.get("q", "").strip()
    if q:
        if not request.GET.get("page"):
            try:
                url = queue_search.exact_match_url(q)
            except pki.AmbiguousSerial as exc:
                messages.warning(request, str(exc))
                url = None
            if url:
                return redirect(url)  # a whole request ID or serial: its page
        rows = queue_search.search(rows, q)
    rows = rows.order_by("-submitted_at", "-pk")
    page = paging.CountFreePaginator(rows, PAGE_SIZE).look_ahead_page(request.GET.get("page"))
    labels = {p.name: p.label for p in profiles.all_profiles(enabled_only=False)}
    for req in page.object_list:
        req.profile_label = labels.get(req.profile, req.profile)
    extensions.mark_queue_rows(page.object_list)
    counts = services.status_counts()
    return render(
        request,
        "agent/request_list.html",
        {
            "form": form,
            "requests": page.object_list,
            "page": page.number,
            "has_previous": page.has_previous(),
            "has_next": page.has_next(),
            "status_counts": [
                (value, label, counts.get(value, 0))
                for value, label in CertificateRequest.Status.choices
                if value not in CertificateRequest.NOT_IN_QUEUE
            ],
            "status_filter": filters.get("status", ""),
            "expiring_counts": _expiring_counts(),
            "q": q,
            "searched": queue_search.SEARCHED,
            "searched_parts": queue_search.SEARCHED_PARTS,
        },
    )


def _expiring_counts() -> list[tuple[int, str]]:
    """Certificates expiring in 7 and 30 days, unrenewed: each a COUNT over at most
    expiry.COUNT_CAP + 1 entries of the expiry index (shown as "1000+")."""
    counts = expiry.count_expiring_by(now=timezone.now(), windows=(7, 30))
    cap = expiry.COUNT_CAP
    return [(days, f"{cap}+" if n > cap else str(n)) for days, n in counts.items()]


@agent_required
@require_safe
def find(request: HttpRequest) -> HttpResponse:
    """The old "Find" box's address: the queue's search box does its work now."""
    q = request.GET.get("q", "").strip()
    url = reverse("agent:request_list")
    return redirect(f"{url}?{urlencode({'q': q})}" if q else url)


def _csr_details(req: CertificateRequest) -> dict:
    """The stored CSR read again: its key, SANs, whether its signature verifies, and what
    the profile drops from it (shown before approval)."""
    try:
        profile = profiles.get_profile(req.profile)
    except profiles.ProfileError:
        profile = None
    if not req.csr_pem and req.renewal_of_id:
        details = {"ok": True, "problem": "", "info": None, "renewal": True}
        subject, csr_sans = req.renewal_of.x509.subject, []
    else:
        try:
            info = pki.check_csr(req.csr_pem, allow_ed25519=not profile or profile.allow_ed25519)
        except pki.CSRError as exc:
            return {"ok": False, "problem": str(exc), "info": None, "dropped": []}
        details = {"ok": True, "problem": "", "info": info}
        subject, csr_sans = info.csr.subject, info.sans
    details["dropped"] = []
    if profile is not None:
        try:
            details["dropped"] = profiles.dropped_from(
                profile, subject, csr_sans, requester_email=req.requester_email
            )
        except profiles.ProfileError as exc:
            details["subject_problem"] = str(exc)
    return details


def _render_detail(
    request: HttpRequest,
    req: CertificateRequest,
    *,
    approve_form: ApproveForm | None = None,
    reject_form: RejectForm | None = None,
    cancel_form: CancelForm | None = None,
    status: int = 200,
) -> HttpResponse:
    try:
        profile = profiles.get_profile(req.profile)
    except profiles.ProfileError:
        profile = None
    return render(
        request,
        "agent/request_detail.html",
        {
            "req": req,
            "profile": profile,
            "csr": _csr_details(req),
            "events": audit_text.history(req.audit_events.all()),
            "changes": services.renewal_changes(req),
            "approve_form": approve_form or ApproveForm(request=req),
            "reject_form": reject_form or RejectForm(),
            "cancel_form": cancel_form or CancelForm(),
            "is_pending": req.status == CertificateRequest.Status.PENDING,
            "panels": extensions.render_agent_panels(request, req, req.certificate),
        },
        status=status,
    )


@agent_required
@require_safe
def request_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    return _render_detail(request, _get_request(public_id))


def _refused(request: HttpRequest, req: CertificateRequest, exc: services.ServiceError):
    messages.error(request, exc.message)
    return redirect(req.get_agent_url())


@agent_required
@require_POST
def approve(request: HttpRequest, public_id: str) -> HttpResponse:
    req = _get_request(public_id)
    form = ApproveForm(request.POST, request=req)
    if form.is_valid():
        try:
            cert = services.approve_request(
                req,
                agent=request.user,
                validity_days=form.cleaned_data["validity_days"],
                sans=form.cleaned_data["sans"],
                note=form.cleaned_data["note"],
                ip=client_ip(request),
            )
        except services.InvalidRequest as exc:
            # approve_request's refusals concern the validity or the SANs the agent chose.
            form.add_error(None, exc.message)
        except services.ServiceError as exc:  # decided already, no CA, held by someone else
            return _refused(request, req, exc)
        else:
            messages.success(
                request,
                f"Request {req.display_id} approved: certificate {cert.serial_colons} issued.",
            )
            return redirect("agent:certificate_issued", req.public_id)
    return _render_detail(request, req, approve_form=form, status=400)


@agent_required
@require_POST
def reject(request: HttpRequest, public_id: str) -> HttpResponse:
    req = _get_request(public_id)
    form = RejectForm(request.POST)
    if form.is_valid():
        try:
            services.reject_request(
                req, agent=request.user, reason=form.cleaned_data["reason"], ip=client_ip(request)
            )
        except services.InvalidRequest as exc:
            form.add_error("reason", exc.message)
        except services.ServiceError as exc:
            return _refused(request, req, exc)
        else:
            messages.success(request, f"Request {req.display_id} rejected.")
            return redirect(req.get_agent_url())
    return _render_detail(request, req, reject_form=form, status=400)


@agent_required
@require_POST
def cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    req = _get_request(public_id)
    form = CancelForm(request.POST)
    if form.is_valid():
        try:
            services.cancel_request(
                req, agent=request.user, note=form.cleaned_data["note"], ip=client_ip(request)
            )
        except services.ServiceError as exc:
            return _refused(request, req, exc)
        messages.success(request, f"Request {req.display_id} canceled.")
        return redirect(req.get_agent_url())
    return _render_detail(request, req, cancel_form=form, status=400)


@agent_required
@require_safe
def certificate_issued(request: HttpRequest, public_id: str) -> HttpResponse:
    req = _get_request(public_id)
    cert = req.certificate
    if cert is None:
        messages.info(request, f"Request {req.display_id} is {req.status}; no certificate yet.")
        return redirect(req.get_agent_url())
    return render(
        request,
        "agent/certificate_issued.html",
        {
            "req": req,
            "cert": cert,
            "replaced": req.renewal_of if req.renewal_of_id else None,
            "summary": describe_certificate(cert.x509),
            "panels": extensions.render_agent_panels(request, req, cert),
        },
    )
