"""Dogtag's agent REST resources (filled in next)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from .errors import RestError
from .http import resource


@resource("GET")
def request_list(request: HttpRequest) -> HttpResponse:
    raise RestError("Forbidden", "not yet")


request_review = certificate_review = request_list


@resource("POST")
def request_action(request: HttpRequest, request_id: str, action: str) -> HttpResponse:
    raise RestError("Forbidden", "not yet")


certificate_action = request_action
