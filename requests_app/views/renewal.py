"""Renewal: the end-entity pages that start one from a certificate's page (with a CSR or a
key made here), and the agent's one click that revokes the certificate a renewal replaced."""

from __future__ import annotations

from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from .. import pki, profiles, services, throttle
from ..forms import RenewalForm, RenewalServerKeyForm
from ..httputil import agent_required, capped_uploads, client_ip
from ..models import Certificate, CertificateRequest
from .common import find_certificate, find_request, not_found


def masked_email(address: str) -> str:
    """An address as a page open to anyone may show it: a***@example.test."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _certificate_or_404(request: HttpRequest, serial: str) -> Certificate | HttpResponse:
    cert = find_certificate(serial)
    if cert is None:
        return not_found(
            request,
            "Certificate not found",
            "No certificate has that serial number. Check the number you were given; it is "
            "written in hexadecimal.",
        )
    return cert


def _page(request: HttpRequest, cert: Certificate) -> dict:
    try:
        profile = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        profile = None
    req = cert.issued_request
    cns = cert.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "cert": cert,
        "common_name": str(cns[0].value) if cns else "",
        "profile": profile,
        "summary": pki.describe_certificate(cert.x509),
        "server_key": profile is not None and services.offers_server_key(profile.name),
        "recipient": masked_email(req.requester_email) if req else "",
        "confirm_days": settings.EMAIL_CONFIRMATION_DAYS,
    }


def _submitted(request: HttpRequest, req: CertificateRequest, issued) -> HttpResponse:
    if issued is not None:
        messages.success(
            request,
            f"Your renewal was issued at once (same key, same names): certificate "
            f"{issued.serial_colons}. It is also mailed as the profile delivers certificates.",
        )
    elif req.awaits_email:
        messages.success(
            request,
            f"Your renewal was saved. We sent a message to the certificate's requester "
            f"({masked_email(req.requester_email)}): open the link in it, or type its code, "
            f"within {settings.EMAIL_CONFIRMATION_DAYS} days. Only then can an agent review "
            "the renewal.",
        )
    else:
        messages.success(request, "Your renewal was submitted. An agent will review it.")
    return redirect(req)


def _status(exc: services.ServiceError) -> int:
    return 400 if isinstance(exc, services.InvalidRequest) else 503


@capped_uploads(pki.MAX_CSR_BYTES)
@require_http_methods(["GET", "POST"])
def renew(request: HttpRequest, serial: str) -> HttpResponse:
    """Renew a certificate with a CSR: a new key, or the certificate's own."""
    cert = _certificate_or_404(request, serial)
    if isinstance(cert, HttpResponse):
        return cert
    page = _page(request, cert)
    if page["profile"] is None:
        return not_found(
            request,
            "This certificate cannot be renewed",
            "Its profile is no longer offered. Request a new certificate.",
        )
    if request.method != "POST":
        form = RenewalForm(profile=page["profile"])
        return render(request, "ee/renew.html", {**page, "form": form})
    form = RenewalForm(request.POST, request.FILES, profile=page["profile"])
    # Each renewal may mail the requester: the enrollment limit per address applies.
    if form.is_valid() and not throttle.enrollment_allowed(client_ip(request)):
        again = throttle.try_again_message(throttle.enrollment_rate())
        return render(request, "ee/rate_limited.html", {**page, "again": again}, status=429)
    if not form.is_valid():
        return render(request, "ee/renew.html", {**page, "form": form}, status=400)
    try:
        req, issued = services.submit_web_renewal(
            cert,
            csr=form.cleaned_data["csr_data"],
            note=form.cleaned_data["note"],
            ip=client_ip(request),
        )
    except services.ServiceError as exc:
        field = form.csr_field if exc.field == "csr" else exc.field
        form.add_error(field if field in form.fields else None, exc.message)
        return render(request, "ee/renew.html", {**page, "form": form}, status=_status(exc))
    return _submitted(request, req, issued)


@sensitive_variables()  # the cleaned data holds the passphrase
@sensitive_post_parameters("passphrase", "passphrase_confirm")
@require_http_methods(["GET", "POST"])
def renew_server_key(request: HttpRequest, serial: str) -> HttpResponse:
    """Renew a certificate whose profile offers keys made here: a new key, a new passphrase."""
    cert = _certificate_or_404(request, serial)
    if isinstance(cert, HttpResponse):
        return cert
    page = {**_page(request, cert), "retention_days": settings.SERVER_KEY_RETENTION_DAYS}
    if not page["server_key"]:
        return not_found(
            request,
            "No server-made keys for this profile",
            "Renew this certificate with a certificate signing request made on your own computer.",
        )
    if request.method != "POST":
        form = RenewalServerKeyForm()
        return render(request, "ee/renew_server_key.html", {**page, "form": form})
    form = RenewalServerKeyForm(request.POST)
    ip = client_ip(request)
    if form.is_valid() and not throttle.server_key_enrollment_allowed(ip):
        again = throttle.try_again_message(throttle.server_key_enrollment_rate())
        form.add_error(None, f"Too many requests came from your address in the last hour. {again}")
        return render(request, "ee/renew_server_key.html", {**page, "form": form}, status=429)
    if not form.is_valid():
        return render(request, "ee/renew_server_key.html", {**page, "form": form}, status=400)
    try:
        req = services.submit_renewal_with_server_key(
            cert,
            passphrase=form.cleaned_data["passphrase"],
            note=form.cleaned_data["note"],
            ip=ip,
        )
    except services.ServiceError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return render(
            request, "ee/renew_server_key.html", {**page, "form": form}, status=_status(exc)
        )
    return _submitted(request, req, None)


@agent_required
@require_POST
def revoke_superseded(request: HttpRequest, public_id: str) -> HttpResponse:
    """Revoke, with reason superseded, the certificate that this renewal's certificate
    replaced (the issued page's one click)."""
    req = find_request(public_id)
    if req is None:
        return not_found(request, "Request not found", "No request has that ID.")
    old = req.renewal_of
    if old is None or req.certificate_id is None or old.superseded_by_id != req.certificate_id:
        messages.error(
            request,
            f"Request {req.display_id} issued no renewal that replaced a certificate; "
            "nothing was revoked.",
        )
        return redirect(req.get_agent_url())
    try:
        services.revoke_certificate(
            old, reason="superseded", actor=request.user, ip=client_ip(request)
        )
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Certificate {old.serial_colons} revoked "
            f"(superseded by {req.certificate.serial_colons}).",
        )
    return redirect("agent:certificate_issued", req.public_id)
