"""What every REST resource shares: JSON replies, the body reader, and the wrapper that
turns every outcome (a refusal, a malformed body, a bug) into Dogtag's JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .. import services
from ..httputil import has_nul
from .errors import RestError, error_response

logger = logging.getLogger(__name__)

#: The largest JSON body read: an enrollment with a 16 KiB RSA CSR is about 5 KiB.
MAX_BODY = 64 * 1024


def reply(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": True})


def json_body(request: HttpRequest, *, required: bool = True) -> dict:
    """The request's JSON object; an empty body is {} unless required (unrevoke sends none)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise RestError("BadRequest", "Invalid Content-Length") from None
    if length > MAX_BODY:
        raise RestError("BadRequest", f"The request body is larger than {MAX_BODY} bytes")
    try:
        raw = request.body
    except (RequestDataTooBig, SuspiciousOperation):
        raise RestError("BadRequest", f"The request body is larger than {MAX_BODY} bytes") from None
    if len(raw) > MAX_BODY:
        raise RestError("BadRequest", f"The request body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        if required:
            raise RestError("BadRequest", "The request body is empty; send a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RestError("BadRequest", f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RestError("BadRequest", "The request body must be a JSON object")
    if has_nul(data):
        # JSON may spell NUL as \u0000; no field takes it (PostgreSQL text refuses it).
        raise RestError("BadRequest", "The request body contains a NUL character")
    return data


def service_error(exc: services.ServiceError) -> RestError:
    """A service's refusal in Dogtag's class: not found, conflict (the CA cannot act now,
    the row is busy), or a bad request (bad input, a request that is not pending)."""
    if isinstance(exc, services.RequestNotFound):
        return RestError("RequestNotFound", exc.message)
    if isinstance(exc, services.CertificateNotFound):
        return RestError("CertNotFound", exc.message)
    if isinstance(exc, services.NotAllowed):
        return RestError("Forbidden", exc.message)
    if isinstance(exc, (services.CAUnavailable, services.RecordBusy)):
        return RestError("ConflictingOperation", exc.message)
    return RestError("BadRequest", exc.message)


def resource(*methods: str, private: bool = False):
    """A REST resource: these methods only (no CSRF token: see auth.py for what stands in
    for it), every refusal and failure as PKIException JSON, never an HTML page. A private
    resource (the agents') is never stored by a cache: reviews carry nonces."""

    def decorator(view: Callable[..., HttpResponse]):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = _answer(request, *args, **kwargs)
            if private:
                response["Cache-Control"] = "no-store"
            return response

        def _answer(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error_response(
                    "BadRequest", f"Method {request.method} is not allowed here", status=405
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except RestError as exc:
                return exc.response()
            except services.ServiceError as exc:
                return service_error(exc).response()
            except Exception:
                logger.exception("REST resource %s failed", view.__name__)
                return error_response("PKI", "Internal error in the Certificate Manager")

        return wrapper

    return decorator


def text_value(value: object, what: str, *, limit: int) -> str:
    """A JSON value that must be text (or null: empty), at most `limit` characters."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RestError("BadRequest", f"{what} must be a string")
    text = str(value)
    if len(text) > limit:
        raise RestError("BadRequest", f"{what} is longer than {limit} characters")
    if "\x00" in text:
        raise RestError("BadRequest", f"{what} contains a NUL character")
    return text


def int_param(request: HttpRequest, name: str, default: int, *, low: int, high: int) -> int:
    """A query parameter as an int within [low, high]; a bad value is a BadRequest."""
    text = request.GET.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise RestError("BadRequest", f"{name} must be a number, not {text[:40]!r}") from None
    return min(max(value, low), high)
