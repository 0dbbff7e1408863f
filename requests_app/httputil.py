"""HTTP helpers that views, forms, admin and the protocol adapters share: who is asking
(client address, the agent check) and how much they may upload."""

from __future__ import annotations

import io
import ipaddress
from functools import cache, wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import agent_auth
from .models import APPROVE_PERMISSION


def has_nul(value) -> bool:
    """Whether any key or string inside a parsed JSON value holds a NUL character (JSON may
    spell it as \\u0000; no field takes it, and PostgreSQL's text refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


@cache
def _trusted_networks(proxies: tuple[str, ...]):
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _is_trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _trusted_networks(tuple(settings.TRUSTED_PROXIES)))


def from_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the peer of this connection is one of TRUSTED_PROXIES, so that the headers
    it sets about the client (X-Forwarded-For, the client certificate) may be believed."""
    return _is_trusted(request.META.get("REMOTE_ADDR") or "")


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not itself a trusted proxy (each proxy appends the
    address it saw, so the entries left of the first untrusted one are the client's to forge).
    Rate limits, lockouts and audit rows all use this."""
    peer = request.META.get("REMOTE_ADDR") or None
    if peer is None or not _is_trusted(peer):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a trusted proxy's client: stop believing
    return hops[0] if hops else peer


def lacks_second_factor(request: HttpRequest) -> bool:
    """Whether this logged-in session still owes the second factor (AGENT_REQUIRE_MFA on,
    and neither a code, a passkey, a recovery code nor an agent certificate recorded)."""
    return settings.AGENT_REQUIRE_MFA and not agent_auth.is_verified(request)


def second_factor_refusal(request: HttpRequest):
    """What an agent surface answers a session that owes the second factor: a GET goes to
    the second-factor page (which sends an agent without a device to enrol one); anything
    else is refused, so that a POST changes nothing."""
    if request.method in ("GET", "HEAD"):
        return redirect_to_login(request.get_full_path(), reverse("agent_verify"))
    raise PermissionDenied("Pass the second factor (a code or a passkey) first.")


def agent_required(view):
    """Agents only: anonymous GETs go to the login page; everyone else without the
    permission (and anonymous POSTs, whose form data a login redirect would lose) gets 403;
    an agent's session that has not passed the second factor goes to the second-factor page
    (GET) or gets 403 (anything else)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated and request.method in ("GET", "HEAD"):
            return redirect_to_login(request.get_full_path())
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied("Only Certificate Manager agents may use this page.")
        if lacks_second_factor(request):
            return second_factor_refusal(request)
        return view(request, *args, **kwargs)

    return wrapper


class CappedUploadHandler(FileUploadHandler):
    """Passes on at most `limit` bytes of each uploaded file and only counts the rest, so an
    oversized file is never stored: the view gets an empty stand-in with the real size."""

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        return raw_data if self.received <= self.limit else None

    def file_complete(self, file_size):
        if self.received <= self.limit:
            return None  # the next handler holds the whole file
        return UploadedFile(io.BytesIO(), self.file_name, self.content_type, self.received)


def capped_uploads(limit: int):
    """Cap uploaded files for one view. The handler must be installed before the body is
    parsed, which CsrfViewMiddleware does, so the CSRF check moves inside (Django's recipe)."""

    def decorator(view):
        protected = csrf_protect(view)

        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            request.upload_handlers.insert(0, CappedUploadHandler(request, limit=limit))
            return protected(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorator


def download(encoded) -> HttpResponse:
    """An attachment response for an encoded certificate or CA."""
    response = HttpResponse(encoded.data, content_type=encoded.content_type)
    response["Content-Disposition"] = content_disposition_header(True, encoded.filename)
    return response


class TrustedProxyHeadersMiddleware:
    """Drops X-Forwarded-Proto unless a TRUSTED_PROXIES peer sent it: Django believes
    SECURE_PROXY_SSL_HEADER from anyone, and a client talking plain http to the portal must
    not pass for https (secure cookies, no redirect)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not from_trusted_proxy(request):
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)
