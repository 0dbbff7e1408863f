"""End-entity pages: anyone may enroll, check a request, and fetch certificates and the CA."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from .. import ca as ca_store
from .. import encodings, pki, profiles, services
from ..forms import CertificateLookupForm, EnrollmentForm, RequestLookupForm
from ..models import CertificateAuthority, normalize_public_id, normalize_serial
from .common import (
    capped_uploads,
    client_ip,
    describe_certificate,
    download,
    find_certificate,
    find_request,
    not_found,
)


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "ee/home.html",
        {
            "profiles": profiles.all_profiles(),
            "request_form": RequestLookupForm(),
            "certificate_form": CertificateLookupForm(),
        },
    )


@capped_uploads(pki.MAX_CSR_BYTES)
@require_http_methods(["GET", "POST"])
def enroll(request: HttpRequest, profile: str) -> HttpResponse:
    try:
        prof = profiles.get_profile(profile)
    except profiles.ProfileError:
        return not_found(
            request,
            "No such enrollment profile",
            "There is no enrollment profile by that name. Choose one on the home page.",
        )
    if request.method != "POST":
        form = EnrollmentForm(profile=prof)
        return render(request, "ee/enroll.html", {"profile": prof, "form": form})
    form = EnrollmentForm(request.POST, request.FILES, profile=prof)
    if form.is_valid():
        data = form.cleaned_data
        try:
            req = services.submit_request(
                profile=prof.name,
                csr=data["csr_data"],
                requester_email=data["requester_email"],
                requester_name=data["requester_name"],
                note=data["note"],
                extra_hostnames=data.get("extra_hostnames", []),
                ip=client_ip(request),
            )
        except services.InvalidRequest as exc:
            field = form.csr_field if exc.field == "csr" else exc.field
            form.add_error(field if field in form.fields else None, exc.message)
        else:
            messages.success(request, "Your request was submitted. An agent will review it.")
            return redirect(req)
    return render(request, "ee/enroll.html", {"profile": prof, "form": form}, status=400)


@require_safe
def request_lookup(request: HttpRequest) -> HttpResponse:
    if "request_id" not in request.GET:
        return render(request, "ee/request_lookup.html", {"form": RequestLookupForm()})
    form = RequestLookupForm(request.GET)
    if not form.is_valid():
        return render(request, "ee/request_lookup.html", {"form": form}, status=400)
    return redirect("request_status", normalize_public_id(form.cleaned_data["request_id"]))


@require_safe
def request_status(request: HttpRequest, public_id: str) -> HttpResponse:
    req = find_request(public_id)
    if req is None:
        return not_found(
            request,
            "Request not found",
            "No request has that ID. Check it against the ID you were given when you "
            "submitted the request.",
        )
    try:
        profile_label = profiles.get_profile(req.profile).label
    except profiles.ProfileError:
        profile_label = req.profile
    return render(request, "ee/request_status.html", {"req": req, "profile_label": profile_label})


@require_safe
def certificate_lookup(request: HttpRequest) -> HttpResponse:
    if "serial" not in request.GET:
        return render(request, "ee/certificate_lookup.html", {"form": CertificateLookupForm()})
    form = CertificateLookupForm(request.GET)
    if not form.is_valid():
        return render(request, "ee/certificate_lookup.html", {"form": form}, status=400)
    return redirect("certificate_detail", normalize_serial(form.cleaned_data["serial"]))


def _certificate_not_found(request: HttpRequest) -> HttpResponse:
    return not_found(
        request,
        "Certificate not found",
        "No certificate has that serial number. Check the number you were given; it is "
        "written in hexadecimal.",
    )


@require_safe
def certificate_detail(request: HttpRequest, serial: str) -> HttpResponse:
    cert = find_certificate(serial)
    if cert is None:
        return _certificate_not_found(request)
    return render(
        request,
        "ee/certificate_detail.html",
        {
            "cert": cert,
            "summary": describe_certificate(cert.x509),
            "formats": encodings.CERTIFICATE_FORMATS,
        },
    )


@require_safe
def certificate_download(request: HttpRequest, serial: str, fmt: str) -> HttpResponse:
    cert = find_certificate(serial)
    if cert is None:
        return _certificate_not_found(request)
    try:
        return download(encodings.encode_certificate(cert, fmt))
    except encodings.UnknownFormat as exc:
        raise Http404(str(exc)) from None


@require_safe
def ca_page(request: HttpRequest) -> HttpResponse:
    try:
        ca = ca_store.default_ca()
    except ca_store.NoCAError:
        return render(request, "ee/ca.html", {"ca": None})
    earlier = CertificateAuthority.objects.filter(is_default=False).order_by("-created")
    return render(
        request,
        "ee/ca.html",
        {
            "ca": ca,
            "summary": describe_certificate(ca.certificate),
            "chain": [describe_certificate(c) for c in ca.chain],
            "earlier": earlier,
            "issuers_url": ca_store.ca_issuers_url(ca),
        },
    )


@require_safe
def ca_certificate(request: HttpRequest, ca_id: int, fmt: str) -> HttpResponse:
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    try:
        return download(encodings.encode_ca(ca, fmt))
    except encodings.UnknownFormat as exc:
        raise Http404(str(exc)) from None
