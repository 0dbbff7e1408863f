"""End-entity pages: anyone may enroll, check a request, and fetch certificates and the CA."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import NamedTuple

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import (
    condition,
    require_http_methods,
    require_POST,
    require_safe,
)

from .. import downloads, pki, profiles, services, throttle
from ..downloads import Encoded
from ..forms import (
    CertificateLookupForm,
    EnrollmentForm,
    Pkcs12Form,
    RequestLookupForm,
    ServerKeyEnrollmentForm,
)
from ..httputil import capped_uploads, client_ip, download
from ..models import (
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    NoCAError,
    is_serial,
    normalize_public_id,
    normalize_serial,
)
from ..pki import describe_certificate
from .common import find_certificate, find_request, not_found

#: How long a shared certificate page (keyed by the certificate's state) or a certificate
#: file stays in the cache.
SHARED_CACHE_SECONDS = 600


class Shared(NamedTuple):
    """What every anonymous visitor of a URL gets (HTML, or an encoded certificate), with
    its ETag."""

    etag: str
    content: bytes | Encoded


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "ee/home.html",
        {
            "profiles": profiles.all_profiles(),
            "server_key_profiles": settings.SERVER_KEY_PROFILES,
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
        return _no_such_profile(request)
    page = {"profile": prof, "server_key": services.offers_server_key(prof.name)}
    if request.method != "POST":
        return render(request, "ee/enroll.html", {**page, "form": EnrollmentForm(profile=prof)})
    form = EnrollmentForm(request.POST, request.FILES, profile=prof)
    # A flood from one address must not fill the agents' queue.
    if form.is_valid() and not throttle.enrollment_allowed(client_ip(request)):
        again = throttle.try_again_message(throttle.enrollment_rate())
        return render(request, "ee/rate_limited.html", {**page, "again": again}, status=429)
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
        except services.ServiceError as exc:  # every refusal is the requester's page, not a 500
            field = form.csr_field if exc.field == "csr" else exc.field
            form.add_error(field if field in form.fields else None, exc.message)
            return render(request, "ee/enroll.html", {**page, "form": form}, status=_status(exc))
        messages.success(request, _submitted_message(req))
        return redirect(req)
    return render(request, "ee/enroll.html", {**page, "form": form}, status=400)


def _status(exc: services.ServiceError) -> int:
    """400 for the requester's input; 503 when the portal cannot take it now (no CA...)."""
    return 400 if isinstance(exc, services.InvalidRequest) else 503


def _submitted_message(req, *, server_key: bool = False) -> str:
    key = ", and your key is stored encrypted under your passphrase" if server_key else ""
    if req.awaits_email:
        return (
            f"Your request was saved{key}. We sent a message to {req.requester_email}: open "
            f"the link in it, or type its code, within {settings.EMAIL_CONFIRMATION_DAYS} "
            "days. Only then can an agent review the request."
        )
    return f"Your request was submitted{key}. An agent will review the request."


def _no_such_profile(request: HttpRequest) -> HttpResponse:
    return not_found(
        request,
        "No such enrollment profile",
        "There is no enrollment profile by that name. Choose one on the home page.",
    )


@sensitive_variables()  # the cleaned data holds the passphrase
@sensitive_post_parameters("passphrase", "passphrase_confirm")
@require_http_methods(["GET", "POST"])
def enroll_server_key(request: HttpRequest, profile: str) -> HttpResponse:
    """Enrollment for people without tools: the portal makes the key."""
    try:
        prof = profiles.get_profile(profile)
    except profiles.ProfileError:
        return _no_such_profile(request)
    if not services.offers_server_key(prof.name):
        return not_found(
            request,
            "No server-made keys for this profile",
            f"The {prof.label} profile needs a certificate signing request made on your "
            "own computer.",
        )
    page = {"profile": prof, "retention_days": settings.SERVER_KEY_RETENTION_DAYS}
    if request.method != "POST":
        form = ServerKeyEnrollmentForm()
        return render(request, "ee/enroll_server_key.html", {**page, "form": form})
    form = ServerKeyEnrollmentForm(request.POST)
    ip = client_ip(request)
    # Each enrollment makes a key pair: cap them per address so nobody keeps the server busy.
    if form.is_valid() and not throttle.server_key_enrollment_allowed(ip):
        again = throttle.try_again_message(throttle.server_key_enrollment_rate())
        form.add_error(None, f"Too many requests came from your address in the last hour. {again}")
        return render(request, "ee/enroll_server_key.html", {**page, "form": form}, status=429)
    if form.is_valid():
        data = form.cleaned_data
        try:
            req = services.submit_request_with_server_key(
                profile=prof.name,
                passphrase=data["passphrase"],
                requester_email=data["requester_email"],
                requester_name=data["requester_name"],
                note=data["note"],
                ip=ip,
            )
        except services.ServiceError as exc:  # every refusal is the requester's page, not a 500
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return render(
                request, "ee/enroll_server_key.html", {**page, "form": form}, status=_status(exc)
            )
        messages.success(request, _submitted_message(req, server_key=True))
        return redirect(req)
    return render(request, "ee/enroll_server_key.html", {**page, "form": form}, status=400)


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
    return render(
        request,
        "ee/request_status.html",
        {
            "req": req,
            "profile_label": profile_label,
            "server_key": services.server_key_state(req),
            "mailed_when_issued": _mailed_when_issued(req),
        },
    )


def _mailed_when_issued(req) -> bool:
    """Whether approval mails the requester a link (delivery's ready mail), as the page
    promises: every address but an ACME client's, unless the operator turned it off."""
    return bool(
        settings.DELIVERY_AUTOMATIC
        and settings.DELIVERY_READY_MAIL
        and req.requester_email
        and req.channel != "acme"
    )


@require_safe
def certificate_lookup(request: HttpRequest) -> HttpResponse:
    if "serial" not in request.GET:
        return render(request, "ee/certificate_lookup.html", {"form": CertificateLookupForm()})
    form = CertificateLookupForm(request.GET)
    if form.is_valid():
        try:
            cert = find_certificate(form.cleaned_data["serial"])
        except pki.SerialError as exc:  # digits that name two certificates
            form.add_error("serial", str(exc))
        else:
            if cert is None:
                return _certificate_not_found(request)
            return redirect("certificate_detail", cert.serial)
    return render(request, "ee/certificate_lookup.html", {"form": form}, status=400)


def _certificate_not_found(request: HttpRequest) -> HttpResponse:
    return not_found(
        request,
        "Certificate not found",
        "No certificate has that serial number. Check the number you were given: it is "
        "written in hexadecimal, like 3A:F2:....",
    )


def _render_certificate(
    request: HttpRequest,
    cert: Certificate,
    *,
    pkcs12_form: Pkcs12Form | None = None,
    status: int = 200,
) -> HttpResponse:
    req = cert.issued_request
    server_key = services.server_key_state(req) if req else None
    if server_key and server_key.stored and pkcs12_form is None:
        pkcs12_form = Pkcs12Form(
            user_agent=request.headers.get("User-Agent", ""),
            request_id=request.GET.get("request", ""),
        )
    try:
        profile = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        profile = None
    return render(
        request,
        "ee/certificate_detail.html",
        {
            "cert": cert,
            "profile": profile,
            "summary": describe_certificate(cert.x509),
            "for_people": profile is not None and not profile.takes_hostnames,
            "server_key": server_key,
            "pkcs12_form": pkcs12_form,
            "retention_days": settings.SERVER_KEY_RETENTION_DAYS,
        },
        status=status,
    )


def _shared(request: HttpRequest, find: Callable[[], Shared | None]) -> Shared | None:
    """find() once per request: condition() asks for the ETag before the view runs."""
    if not hasattr(request, "_ca_portal_shared"):
        request._ca_portal_shared = find()
    return request._ca_portal_shared


def _cached(kind: str, *key: str, make: Callable[[], Shared | None]) -> Shared | None:
    """What kind and key name, from the cache, or made and kept (a None is not kept)."""
    cache_key = ":".join(["ca-portal", kind, *key])
    shared = cache.get(cache_key)
    if shared is None:
        shared = make()
        if shared is not None:
            cache.set(cache_key, shared, timeout=SHARED_CACHE_SECONDS)
    return shared


def _shared_page(request: HttpRequest, serial: str) -> Shared | None:
    """The certificate page every anonymous visitor shares; None when the page is the
    visitor's own (a user, pending messages, a form for a portal-made key) or not found."""
    return _shared(request, lambda: _find_shared_page(request, serial))


def _find_shared_page(request: HttpRequest, serial: str) -> Shared | None:
    # What an anonymous visitor sees changes only with the certificate's status, so it is
    # rendered once per state and kept: one light query decides, rendering is skipped.
    # Pages with a form (CSRF token), a user, or pending messages are never shared.
    if (
        request.user.is_authenticated
        or len(messages.get_messages(request))
        or not is_serial(serial)
    ):
        return None
    state = (
        Certificate.objects.with_serial(serial)
        .values_list(
            "fingerprint_sha256",
            "status",
            "revocation_reason",
            "request__encrypted_private_key",
            "request__key_erased_at",
            "superseded_by_id",
        )
        .first()
    )
    if state is None or state[3] or state[4]:  # unknown, or a portal-made key: its own form
        return None
    fingerprint, status, reason = (str(part) for part in state[:3])
    status = f"{status}:superseded-by-{state[5]}" if state[5] else status  # a renewal shown

    def render_page() -> Shared | None:
        response = _certificate_page(request, serial)
        if response.status_code != 200:
            return None
        return Shared(hashlib.sha256(response.content).hexdigest()[:32], response.content)

    return _cached("certificate-page", fingerprint, status, reason, make=render_page)


def _shared_page_etag(request: HttpRequest, serial: str) -> str | None:
    page = _shared_page(request, serial)
    return page.etag if page else None


@require_safe
@condition(etag_func=_shared_page_etag)
def certificate_detail(request: HttpRequest, serial: str) -> HttpResponse:
    page = _shared_page(request, serial)
    return HttpResponse(page.content) if page else _certificate_page(request, serial)


def _certificate_page(request: HttpRequest, serial: str) -> HttpResponse:
    cert = find_certificate(serial)
    if cert is None:
        return _certificate_not_found(request)
    return _render_certificate(request, cert)


def _shared_file(request: HttpRequest, serial: str, fmt: str) -> Shared | None:
    """The certificate encoded in fmt, with its fingerprint as ETag; None when there is no
    such certificate or format."""
    return _shared(request, lambda: _find_shared_file(serial, fmt))


def _find_shared_file(serial: str, fmt: str) -> Shared | None:
    if not is_serial(serial) or fmt not in downloads.CERTIFICATE_FORMATS:
        return None

    def encode() -> Shared | None:
        cert = find_certificate(serial)
        if cert is None:
            return None
        return Shared(cert.fingerprint_sha256, downloads.encode_certificate(cert, fmt))

    # A certificate and every encoding of it never change: served without the database.
    return _cached("certificate-file", normalize_serial(serial), fmt, make=encode)


def _shared_file_etag(request: HttpRequest, serial: str, fmt: str = "der") -> str | None:
    shared = _shared_file(request, serial, fmt)
    return shared.etag if shared else None


@sensitive_variables()
@sensitive_post_parameters("passphrase")
@require_POST
def certificate_pkcs12(request: HttpRequest, serial: str) -> HttpResponse:
    """The server-made key with its certificate and chain as a .p12, once, for the request ID
    and the passphrase."""
    cert = find_certificate(serial)
    if cert is None:
        return _certificate_not_found(request)
    req = cert.issued_request
    if req is None:
        raise Http404("This certificate has no key stored here.")
    form = Pkcs12Form(request.POST)
    if not form.is_valid():
        return _render_certificate(request, cert, pkcs12_form=form, status=400)
    by_address = f"key-download:address:{client_ip(request)}"
    try:
        with throttle.one_at_a_time(by_address):
            judged = _judge_key_download(request, form, cert, by_address)
    except throttle.Busy:  # another guess from this address or for this key took too long
        judged = _Judged(wait=1)
    if judged.gone:
        messages.error(request, judged.gone)
        return redirect("certificate_detail", cert.serial)
    if judged.wait:
        form.add_error(None, _try_again_in(judged.wait))
        response = _render_certificate(request, cert, pkcs12_form=form, status=429)
        response["Retry-After"] = str(judged.wait)
        return response
    if judged.data is None:
        if judged.lockout:
            form.add_error(None, _try_again_in(judged.lockout))
        return _render_certificate(request, cert, pkcs12_form=form, status=400)
    response = download(Encoded(judged.data, "application/x-pkcs12", f"{cert.serial_filename}.p12"))
    response["Cache-Control"] = "no-store"  # the key must not linger in a shared cache
    return response


class _Judged(NamedTuple):
    """What became of one attempt to download a key."""

    data: bytes | None = None  # the .p12
    wait: int = 0  # locked: seconds until the next attempt
    lockout: int = 0  # refused: the lockout this failure earned
    gone: str = ""  # no key to download (erased, expired, not issued): why


@sensitive_variables()
def _judge_key_download(
    request: HttpRequest, form: Pkcs12Form, cert: Certificate, by_address: str
) -> _Judged:
    """Check the lockouts, the request ID and the passphrase, counting each failure.

    Two scopes: the client address over every certificate (wrong request IDs count there),
    and the certificate from every address, which only someone with the request ID reaches.
    So many addresses get no more guesses than one, and a person who knows only the public
    serial number can neither guess nor lock the owner out. The caller holds the address
    scope, this holds the certificate's: each judges one guess at a time, so concurrent
    requests and several processes get no more than the budget either."""
    address_free = settings.KEY_DOWNLOAD_ADDRESS_FREE_ATTEMPTS
    if wait := throttle.lockout_remaining(by_address):
        return _Judged(wait=wait)
    req = cert.issued_request
    if not _names_request(form.cleaned_data["request_id"], req):
        form.add_error(
            "request_id",
            "That is not the request ID of this certificate. Type the ID you were given when "
            "you submitted the request (it is in the mail with your link, too).",
        )
        return _Judged(lockout=throttle.record_failure(by_address, free=address_free))
    by_certificate = f"key-download:certificate:{cert.fingerprint_sha256}"
    with throttle.one_at_a_time(by_certificate):
        if wait := throttle.lockout_remaining(by_certificate):
            return _Judged(wait=wait)
        try:
            data = services.download_server_key(
                req,
                passphrase=form.cleaned_data["passphrase"],
                pkcs12_format=form.cleaned_data["pkcs12_format"],
                ip=client_ip(request),
            )
        except services.WrongPassphrase as exc:
            form.add_error("passphrase", exc.message)
            lockouts = (
                throttle.record_failure(by_certificate),
                throttle.record_failure(by_address, free=address_free),
            )
            return _Judged(lockout=max(lockouts))
        except services.ServiceError as exc:  # erased, expired, not issued, held elsewhere
            return _Judged(gone=exc.message)
        throttle.clear_failures(by_certificate)
        return _Judged(data=data)


def _names_request(typed: str, req: CertificateRequest) -> bool:
    """Whether the typed (normalized) request ID is this request's, in constant time."""
    return hmac.compare_digest(typed.encode(), req.public_id.encode())


def _try_again_in(seconds: int) -> str:
    when = f"{seconds} seconds" if seconds < 120 else f"{-(-seconds // 60)} minutes"
    return f"Too many wrong passphrases. Wait {when} before you try again."


@require_safe
@condition(etag_func=_shared_file_etag)
def certificate_import(request: HttpRequest, serial: str) -> HttpResponse:
    """The certificate as application/x-x509-user-cert, which browsers offer to install."""
    der = _shared_file(request, serial, "der")
    if der is None:
        return _certificate_not_found(request)
    response = HttpResponse(der.content.data, content_type="application/x-x509-user-cert")
    filename = f"{pki.serial_filename(normalize_serial(serial))}.crt"
    response["Content-Disposition"] = content_disposition_header(False, filename)
    return response


@require_safe
@condition(etag_func=_shared_file_etag)
def certificate_download(request: HttpRequest, serial: str, fmt: str) -> HttpResponse:
    shared = _shared_file(request, serial, fmt)
    if shared is not None:
        return download(shared.content)
    cert = find_certificate(serial)
    if cert is None:
        return _certificate_not_found(request)
    try:
        return download(downloads.encode_certificate(cert, fmt))
    except downloads.UnknownFormat as exc:
        raise Http404(str(exc)) from None


@require_safe
def ca_page(request: HttpRequest) -> HttpResponse:
    try:
        ca = CertificateAuthority.objects.default()
    except NoCAError:
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
            "issuers_url": ca.ca_issuers_url(),
        },
    )


@require_safe
def ca_certificate(request: HttpRequest, ca_id: int, fmt: str) -> HttpResponse:
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    try:
        return download(downloads.encode_ca(ca, fmt))
    except downloads.UnknownFormat as exc:
        raise Http404(str(exc)) from None


@require_safe
def ca_import(request: HttpRequest, ca_id: int) -> HttpResponse:
    """The CA certificate as application/x-x509-ca-cert: Firefox then asks what to trust it for."""
    ca = get_object_or_404(CertificateAuthority, pk=ca_id)
    response = HttpResponse(pki.to_der(ca.certificate), content_type="application/x-x509-ca-cert")
    response["Content-Disposition"] = content_disposition_header(False, f"ca-{ca.pk}.crt")
    return response
