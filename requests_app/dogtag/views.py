"""Dogtag's end-entity servlets under /ca/ee/ca/, for certmonger and other Dogtag clients.

Each parses its fields, calls one service, and answers in Dogtag's XML; every outcome,
even a malformed body or a bug, is an XML reply, never an HTML page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from .. import services, throttle
from ..httputil import client_ip
from . import protocol as dogtag

logger = logging.getLogger(__name__)

Params = dict[str, str]
MAX_FIELD = {"requestor_name": 200, "requestor_email": 254, "requestor_phone": 100}
RATE_LIMITED = (
    "Request Rejected - too many requests from this address; try again later (ENROLL_RATE_LIMIT)"
)
AGENTS_APPROVE_HERE = (
    "ca-portal does not take approvals from Dogtag clients: an agent approves requests "
    "in the ca-portal request queue. Configure the client without agent credentials "
    "(no -A, -a, -c/-k or -n/-d)."
)


def _reply(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type=dogtag.CONTENT_TYPE, status=status)


def _params(request: HttpRequest) -> Params:
    """Query and form fields (the body wins); NUL bytes refused, as no database stores them."""
    params = {**request.GET.dict(), **(request.POST.dict() if request.method == "POST" else {})}
    if any("\x00" in key or "\x00" in value for key, value in params.items()):
        raise dogtag.ProtocolError("Invalid Request: a field contains a NUL character")
    for name, limit in MAX_FIELD.items():
        if len(params.get(name, "")) > limit:
            raise dogtag.ProtocolError(f"Invalid Request: {name} is longer than {limit} characters")
    return params


def servlet(error: Callable[[str], str]):
    """Dogtag's conventions: GET or POST, no CSRF token, every failure as `error(message)`."""

    def decorator(view: Callable[[HttpRequest, Params], HttpResponse]):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in ("GET", "POST"):
                response = _reply(error(f"Invalid Request: method {request.method}"), 405)
                response["Allow"] = "GET, POST"
                return response
            try:
                params = _params(request)
            except dogtag.ProtocolError as exc:
                return _reply(error(str(exc)))
            except (SuspiciousOperation, MultiPartParserError, UnicodeDecodeError) as exc:
                # Too big (DATA_UPLOAD_MAX_MEMORY_SIZE), too many fields, a broken body.
                return _reply(error(f"Invalid Request: the body cannot be read ({exc})"))
            try:
                return view(request, params)
            except dogtag.ProtocolError as exc:
                return _reply(error(str(exc)))
            except Exception:
                logger.exception("Dogtag servlet %s failed", view.__name__)
                return _reply(error("Internal error in the Certificate Manager"), 500)

        return wrapper

    return decorator


@servlet(error=dogtag.submit_error)
def profile_submit(request: HttpRequest, params: Params) -> HttpResponse:
    """Enroll a PKCS#10 CSR, or renew by serial (renewal=true, serial_num in decimal)."""
    ip = client_ip(request)
    if not throttle.enrollment_allowed(ip):
        return _reply(dogtag.submit_error(RATE_LIMITED))
    try:
        if params.get("renewal", "").strip().lower() == "true":
            if not params.get("serial_num", "").strip():
                raise dogtag.ProtocolError("Invalid Request: renewal=true needs serial_num")
            req = services.submit_renewal(
                params["serial_num"],
                requester_email=params.get("requestor_email"),
                ip=ip,
                channel="dogtag",
            )
            return _reply(dogtag.submit_pending(req))
        profile = dogtag.profile_for_id(params.get("profileId", "").strip() or "caServerCert")
        kind = params.get("cert_request_type", "pkcs10").strip().lower()
        if kind != "pkcs10":
            raise dogtag.ProtocolError(
                f"Invalid Request: cert_request_type {dogtag.echo(kind)} is not supported; "
                "send a PKCS#10 CSR (pkcs10)"
            )
        if not params.get("cert_request", "").strip():
            raise dogtag.ProtocolError("Invalid Request: cert_request (the PKCS#10 CSR) is missing")
        csr = dogtag.csr_from_param(params["cert_request"])
        phone = params.get("requestor_phone", "").strip()
        req, cert = services.submit_enrollment(
            profile=profile.name,
            csr=csr,
            requester_email=dogtag.requester_email(params.get("requestor_email", ""), csr, profile),
            requester_name=params.get("requestor_name", ""),
            note=f"Phone: {phone}" if phone else "",
            ip=ip,
            channel="dogtag",
        )
    except services.InvalidRequest as exc:
        # Input we could read but our policy refuses is Dogtag's "rejected" (3).
        return _reply(dogtag.submit_error(exc.message, status=dogtag.REJECTED))
    except services.ServiceError as exc:
        return _reply(dogtag.submit_error(exc.message))
    if cert is not None:
        return _reply(dogtag.submit_issued(req, cert))
    return _reply(dogtag.submit_pending(req))


@servlet(error=dogtag.fixed_error)
def check_request(request: HttpRequest, params: Params) -> HttpResponse:
    """The state of a request: pending, complete, rejected or canceled."""
    ref = dogtag.find_request(params.get("requestId", ""))
    if ref.request is None:
        return _reply(dogtag.not_found(ref))
    return _reply(dogtag.check_status(ref.request))


@servlet(error=dogtag.fixed_error)
def display_cert_from_request(request: HttpRequest, params: Params) -> HttpResponse:
    """The issued certificate of a complete request."""
    ref = dogtag.find_request(params.get("requestId", ""))
    if ref.request is None:
        return _reply(dogtag.not_found(ref))
    return _reply(dogtag.display_certificate(ref.request))


@servlet(error=dogtag.fixed_error)
def profile_list(request: HttpRequest, params: Params) -> HttpResponse:
    """The enabled profiles under their Dogtag IDs (getcert add-ca reads them)."""
    return _reply(dogtag.profile_list())


@servlet(error=dogtag.submit_error)
def profile_submit_ssl_client(request: HttpRequest, params: Params) -> HttpResponse:
    """Agent-authenticated submission: refused, a client never approves its own request."""
    return _reply(dogtag.submit_error(AGENTS_APPROVE_HERE), 403)


@servlet(error=dogtag.agent_refusal)
def agent_servlet(request: HttpRequest, params: Params) -> HttpResponse:
    """profileReview and profileProcess: refused, agents approve in ca-portal."""
    return _reply(dogtag.agent_refusal(AGENTS_APPROVE_HERE), 403)
