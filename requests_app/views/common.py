"""What end-entity and agent views share: lookups, the agent check, downloads."""

from __future__ import annotations

import io
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from ..encodings import Encoded
from ..models import (
    APPROVE_PERMISSION,
    Certificate,
    CertificateRequest,
    is_public_id,
    is_serial,
    normalize_public_id,
)


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def agent_required(view):
    """Agents only: anonymous GETs go to the login page; everyone else without the
    permission (and anonymous POSTs, whose form data a login redirect would lose) gets 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated and request.method in ("GET", "HEAD"):
            return redirect_to_login(request.get_full_path())
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied("Only Certificate Manager agents may use this page.")
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


def find_request(public_id: str) -> CertificateRequest | None:
    """The request with that ID, typed in any case, with or without hyphens."""
    if not is_public_id(public_id):
        return None
    return (
        CertificateRequest.objects.select_related("certificate", "acted_by")
        .filter(public_id=normalize_public_id(public_id))
        .first()
    )


def find_certificate(serial: str) -> Certificate | None:
    """The certificate with that serial; the newest if two CAs share it."""
    if not is_serial(serial):
        return None
    # One query for the certificate, its CA and its request (the page needs all three).
    return (
        Certificate.objects.with_serial(serial)
        .select_related("ca", "request")
        .defer("request__csr_pem")
        .first()
    )


def not_found(request: HttpRequest, title: str, message: str) -> HttpResponse:
    """A 404 page that says what was not found and nothing else."""
    return render(request, "ee/not_found.html", {"title": title, "message": message}, status=404)


def download(encoded: Encoded) -> HttpResponse:
    """An attachment response for an encoded certificate or CA."""
    response = HttpResponse(encoded.data, content_type=encoded.content_type)
    response["Content-Disposition"] = content_disposition_header(True, encoded.filename)
    return response
