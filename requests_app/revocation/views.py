"""Revocation pages: the CRL distribution point, the OCSP responder, and the agent's
certificate page with Revoke and Release hold."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from .. import audit_text, pki, services
from ..httputil import agent_required, client_ip
from ..models import Certificate, CertificateAuthority
from ..pki import describe_certificate
from ..views.common import find_certificate
from . import ocsp
from .forms import RevokeForm

logger = logging.getLogger(__name__)

OCSP_RESPONSE_TYPE = "application/ocsp-response"


# --- CRL distribution point ---------------------------------------------------------


@require_safe
def crl_download(request: HttpRequest, ca_id: int, fmt: str) -> HttpResponse:
    """The CA's newest CRL (DER or PEM), cacheable until its nextUpdate."""
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    try:
        current = services.current_crl(ca)
    except services.ServiceError:
        logger.exception("cannot sign a CRL for CA %s", ca)
        return HttpResponse(
            "The CRL cannot be signed now; try again later.", status=503, content_type="text/plain"
        )
    der = bytes(current.der)
    if fmt == "pem":
        response = HttpResponse(pki.crl_der_to_pem(der), content_type="application/x-pem-file")
    else:
        response = HttpResponse(der, content_type="application/pkix-crl")
    remaining = (current.next_update - pki.utcnow()).total_seconds()
    patch_cache_control(response, public=True, max_age=max(int(remaining), 0))
    response["Last-Modified"] = http_date(current.this_update.timestamp())
    response["Expires"] = http_date(current.next_update.timestamp())
    return get_conditional_response(
        request, last_modified=int(current.this_update.timestamp()), response=response
    )


# --- OCSP responder -----------------------------------------------------------------


def _ocsp_response(der: bytes) -> HttpResponse:
    response = HttpResponse(der, content_type=OCSP_RESPONSE_TYPE)
    # Answers are read live and carry no nextUpdate: nothing may keep an old one.
    patch_cache_control(response, no_cache=True, max_age=0)
    return response


def _answer(data: bytes) -> HttpResponse:
    try:
        return _ocsp_response(ocsp.respond(data))
    except Exception:  # an OCSP client understands internalError, not an HTML error page
        logger.exception("OCSP responder failed")
        return _ocsp_response(pki.unsuccessful_response(pki.OCSPResponseStatus.INTERNAL_ERROR))


def _malformed() -> HttpResponse:
    return _ocsp_response(pki.unsuccessful_response(pki.OCSPResponseStatus.MALFORMED_REQUEST))


@csrf_exempt  # OCSP clients post DER, not forms; nothing here acts for a logged-in user
@require_http_methods(["GET", "HEAD", "POST"])
def ocsp_responder(request: HttpRequest, encoded: str = "") -> HttpResponse:
    """RFC 6960: a DER request in a POST body, or base64 in the path of a GET."""
    if request.method == "POST":
        try:
            data = request.body
        except RequestDataTooBig:
            return _malformed()
        return _answer(data)
    if not encoded:
        return _malformed()
    try:
        data = pki.decode_ocsp_get(encoded)
    except pki.OCSPRequestError:
        return _malformed()
    return _answer(data)


# --- the agent's certificate page ---------------------------------------------------


def _get_certificate(serial: str) -> Certificate:
    cert = find_certificate(serial)
    if cert is None:
        raise Http404("No certificate has that serial number.")
    return cert


def _render_certificate(
    request: HttpRequest,
    cert: Certificate,
    *,
    revoke_form: RevokeForm | None = None,
    status: int = 200,
) -> HttpResponse:
    req = cert.issued_request
    revoked = cert.status == Certificate.Status.REVOKED
    on_hold = revoked and cert.revocation_reason == pki.HOLD
    return render(
        request,
        "agent/certificate.html",
        {
            "cert": cert,
            "req": req,
            "summary": describe_certificate(cert.x509),
            "revoked": revoked,
            "on_hold": on_hold,
            "can_revoke": not revoked or on_hold,
            "reason_label": pki.REASON_LABELS.get(cert.revocation_reason, ""),
            "revoke_form": revoke_form or RevokeForm(on_hold=on_hold),
            "events": audit_text.history(cert.audit_events.all()),
            "crl_url": cert.ca.crl_url(),
            "ocsp_url": cert.ca.ocsp_url(),
        },
        status=status,
    )


@agent_required
@require_safe
def certificate(request: HttpRequest, serial: str) -> HttpResponse:
    return _render_certificate(request, _get_certificate(serial))


@agent_required
@require_POST
def revoke(request: HttpRequest, serial: str) -> HttpResponse:
    cert = _get_certificate(serial)
    on_hold = cert.revocation_reason == pki.HOLD
    form = RevokeForm(request.POST, on_hold=on_hold)
    if form.is_valid():
        try:
            cert = services.revoke_certificate(
                cert,
                reason=form.cleaned_data["reason"],
                invalidity_date=form.cleaned_data["invalidity_date"],
                actor=request.user,
                ip=client_ip(request),
            )
        except services.InvalidRequest as exc:
            form.apply_error(exc)
        except services.ServiceError as exc:
            messages.error(request, exc.message)
            return redirect("agent:certificate", cert.serial)
        else:
            label = pki.REASON_LABELS[cert.revocation_reason]
            messages.success(request, f"Certificate {cert.serial_colons} revoked: {label}.")
            return redirect("agent:certificate", cert.serial)
    return _render_certificate(request, cert, revoke_form=form, status=400)


@agent_required
@require_POST
def release_hold(request: HttpRequest, serial: str) -> HttpResponse:
    cert = _get_certificate(serial)
    try:
        services.release_hold(cert, actor=request.user, ip=client_ip(request))
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Certificate {cert.serial_colons} is off hold and valid again.")
    return redirect("agent:certificate", cert.serial)
