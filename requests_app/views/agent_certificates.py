"""Agent certificates: logging in with one (as Dogtag's agents do), and the agent's own page
to request one (a CSR, or a key made here) and to unlink theirs."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import agent_auth, pki, profiles, services, throttle
from ..client_certificates import presented_certificate
from ..forms import AgentCertificateCsrForm, AgentCertificateKeyForm
from ..httputil import agent_required, capped_uploads, client_ip
from ..models import AgentCertificate, CertificateRequest, normalize_serial

#: The backend recorded in the session: the certificate was checked by the service, and
#: ModelBackend.get_user refuses the session once the account is deactivated.
SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@require_http_methods(["GET", "POST"])
def certificate_login(request: HttpRequest) -> HttpResponse:
    """Log an agent in by the client certificate the TLS terminator passed (both factors)."""
    page = {"next": request.POST.get("next") or request.GET.get("next", "")}
    if request.method != "POST":
        return render(request, "registration/certificate_login.html", page)
    ip = client_ip(request)
    if not throttle.certificate_login_allowed(ip):
        return render(
            request,
            "registration/certificate_refused.html",
            {**page, "message": "Too many certificate logins from your address; wait a while."},
            status=429,
        )
    pem, source = presented_certificate(request)
    try:
        link = services.verify_agent_certificate(pem, ip=ip, source=source)
    except services.CertificateRefused as exc:
        return render(
            request,
            "registration/certificate_refused.html",
            {**page, "message": exc.message, "reason": exc.reason},
            status=403,
        )
    login(request, link.user, backend=SESSION_BACKEND)
    agent_auth.mark_verified(request, "certificate")
    messages.success(
        request,
        f"Logged in as {link.user.get_username()} with certificate "
        f"{link.certificate.serial_colons}.",
    )
    return redirect(_next_url(request))


# --- the agent's own certificates -------------------------------------------------------


def _render_mine(
    request: HttpRequest,
    *,
    csr_form: AgentCertificateCsrForm | None = None,
    key_form: AgentCertificateKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    try:
        profiles.get_profile(services.AGENT_PROFILE)
        enabled = True
    except profiles.ProfileError:
        enabled = False
    links = (
        AgentCertificate.objects.filter(user=request.user)
        .select_related("certificate")
        .order_by("-linked_at")
    )
    requests = CertificateRequest.objects.filter(agent_for=request.user).select_related(
        "certificate", "acted_by"
    )
    return render(
        request,
        "agent/my_certificates.html",
        {
            "enabled": enabled,
            "links": links,
            "requests": requests.order_by("-submitted_at")[:20],
            "csr_form": csr_form or (AgentCertificateCsrForm() if enabled else None),
            "key_form": key_form or AgentCertificateKeyForm(),
            "retention_days": settings.SERVER_KEY_RETENTION_DAYS,
            "min_passphrase": pki.MIN_PASSPHRASE_LENGTH,
        },
        status=status,
    )


@agent_required
@require_safe
def my_certificates(request: HttpRequest) -> HttpResponse:
    return _render_mine(request)


def _submitted(request: HttpRequest, req: CertificateRequest) -> HttpResponse:
    messages.success(
        request,
        f"Request {req.display_id} for your agent certificate is in the queue. Another agent "
        "must approve it; it is then linked to your account.",
    )
    return redirect("agent:my_certificates")


@agent_required
@capped_uploads(pki.MAX_CSR_BYTES)
@require_POST
def request_with_csr(request: HttpRequest) -> HttpResponse:
    try:
        form = AgentCertificateCsrForm(request.POST, request.FILES)
    except profiles.ProfileError:
        raise Http404("The agent profile is disabled.") from None
    if form.is_valid() and not throttle.enrollment_allowed(client_ip(request)):
        form.add_error(None, "Too many requests came from your address; try again later.")
        return _render_mine(request, csr_form=form, status=429)
    if form.is_valid():
        try:
            req = services.request_agent_certificate(
                user=request.user,
                csr=form.cleaned_data["csr_data"],
                note=form.cleaned_data["note"],
                ip=client_ip(request),
            )
        except services.InvalidRequest as exc:
            field = form.csr_field if exc.field == "csr" else exc.field
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            return _submitted(request, req)
    return _render_mine(request, csr_form=form, status=400)


@sensitive_variables()
@sensitive_post_parameters("passphrase", "passphrase_confirm")
@agent_required
@require_POST
def request_with_server_key(request: HttpRequest) -> HttpResponse:
    form = AgentCertificateKeyForm(request.POST)
    ip = client_ip(request)
    if form.is_valid() and not throttle.server_key_enrollment_allowed(ip):
        form.add_error(None, "Too many requests came from your address; try again later.")
        return _render_mine(request, key_form=form, status=429)
    if form.is_valid():
        try:
            req = services.request_agent_certificate_with_server_key(
                user=request.user,
                passphrase=form.cleaned_data["passphrase"],
                note=form.cleaned_data["note"],
                ip=ip,
            )
        except services.InvalidRequest as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return _submitted(request, req)
    return _render_mine(request, key_form=form, status=400)


@agent_required
@require_POST
def unlink(request: HttpRequest, serial: str) -> HttpResponse:
    """Unlink one of the agent's own certificates (another agent's: 404)."""
    link = (
        AgentCertificate.objects.filter(
            user=request.user, certificate__serial=normalize_serial(serial)
        )
        .select_related("certificate")
        .first()
    )
    if link is None:
        raise Http404("You have no linked certificate with that serial number.")
    try:
        services.unlink_agent_certificate(
            link.certificate, actor=request.user, ip=client_ip(request)
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Certificate {link.certificate.serial_colons} no longer logs you in."
        )
    return redirect("agent:my_certificates")
