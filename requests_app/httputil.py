"""HTTP helpers that views, forms, admin and the protocol adapters share: who is asking
(client address, the agent check) and how much they may upload."""

from __future__ import annotations

import io
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from .models import APPROVE_PERMISSION


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


def download(encoded) -> HttpResponse:
    """An attachment response for an encoded certificate or CA."""
    response = HttpResponse(encoded.data, content_type=encoded.content_type)
    response["Content-Disposition"] = content_disposition_header(True, encoded.filename)
    return response
