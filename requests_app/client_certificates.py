"""Where a client certificate comes from: this server's own TLS handshake (gunicorn with
`--ca-certs` and `--cert-reqs 1`), or the header a trusted TLS-terminating proxy sets (nginx's
`$ssl_client_escaped_cert`). The header from any other peer is not believed."""

from __future__ import annotations

import ssl
from urllib.parse import unquote

from django.conf import settings
from django.http import HttpRequest

from .httputil import from_trusted_proxy


def header_meta_key(name: str) -> str:
    """The request.META key of an HTTP header (X-SSL-Client-Cert: HTTP_X_SSL_CLIENT_CERT)."""
    return "HTTP_" + name.upper().replace("-", "_")


def presented_certificate(request: HttpRequest) -> tuple[str | None, str]:
    """The client certificate (PEM) of this request and its source: "tls" (our own
    handshake), "proxy" (a trusted proxy's header), "untrusted" (a header from a peer that is
    no trusted proxy: its value is not returned) or "none"."""
    # gunicorn's sync and gthread workers put the connection in the environ; with its own
    # TLS that is an SSLSocket, whose peer certificate the handshake verified (--ca-certs).
    sock = request.META.get("gunicorn.socket")
    if isinstance(sock, ssl.SSLSocket):
        der = sock.getpeercert(binary_form=True)
        if der:
            return ssl.DER_cert_to_PEM_cert(der), "tls"
    value = request.META.get(header_meta_key(settings.CLIENT_CERT_HEADER), "")
    if not from_trusted_proxy(request):
        return None, "untrusted" if value.strip() else "none"
    # nginx sends the header empty when the client presented no certificate.
    return (unquote(value), "proxy") if value.strip() else (None, "none")
