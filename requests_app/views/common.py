"""What end-entity and agent views share: lookups and the not-found page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..models import Certificate, CertificateRequest


def find_request(public_id: str) -> CertificateRequest | None:
    """The request with that ID, typed in any case, with or without hyphens."""
    return CertificateRequest.objects.select_related("certificate", "acted_by").by_public_id(
        public_id
    )


def find_certificate(serial: str) -> Certificate | None:
    """The certificate with that serial (Certificate.objects.by_serial's rule)."""
    # One query for the certificate, its CA and its request (the page needs all three).
    return (
        Certificate.objects.select_related("ca", "request")
        .defer("request__csr_pem")
        .by_serial(serial)
    )


def not_found(request: HttpRequest, title: str, message: str) -> HttpResponse:
    """A 404 page that says what was not found and nothing else."""
    return render(request, "ee/not_found.html", {"title": title, "message": message}, status=404)
