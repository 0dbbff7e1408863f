"""POST the issued certificate as JSON to automation that installs server certificates.

The body is signed with HMAC-SHA256 under OPTIONS["secret"]; the receiver recomputes
`sha256=<hex>` over the raw body and compares it with the X-CA-Portal-Signature header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from requests_app import downloads, pki

from .. import errors
from .base import BaseDeliveryBackend, SendResult

SIGNATURE_HEADER = "X-CA-Portal-Signature"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, not followed: urllib would turn the POST into a GET without
    the certificate (301-303) and count that as delivered."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise errors.WebhookRedirect(code, newurl)


_OPENER = urllib.request.build_opener(_NoRedirects)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook(BaseDeliveryBackend):
    kinds = ("certificate",)
    default_options = {"url": "", "secret": "", "timeout": 10}

    def check_options(self) -> None:
        parts = urlsplit(self.options["url"])
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImproperlyConfigured(
                f"DELIVERY_BACKENDS[{self.alias!r}]: OPTIONS url must be an http(s) URL"
            )
        if len(self.options["secret"]) < 16:
            raise ImproperlyConfigured(
                f"DELIVERY_BACKENDS[{self.alias!r}]: OPTIONS secret must be at least 16 characters"
            )

    def default_recipient(self, delivery_request, certificate) -> str:
        return self.options["url"]

    def build_message(self, delivery) -> bytes:
        cert = delivery.certificate
        req = delivery.request
        document = {
            "serial": cert.serial,
            "request_id": req.display_id,
            "profile": cert.profile,
            "subject": cert.subject,
            "sans": cert.sans,
            "not_before": cert.not_before.isoformat(),
            "not_after": cert.not_after.isoformat(),
            "pem": downloads.encode_certificate(cert, "pem").data.decode(),
            "chain": pki.to_fullchain_pem(cert.chain[1:]),
        }
        return json.dumps(document, sort_keys=True).encode()

    def transmit(self, delivery, message: bytes) -> SendResult:
        http_request = urllib.request.Request(  # noqa: S310 - the scheme is checked at start-up
            delivery.recipient,
            data=message,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self.options["secret"], message),
                "X-CA-Portal-Delivery": delivery.public_id,
            },
        )
        try:
            with _OPENER.open(http_request, timeout=self.options["timeout"]) as response:
                response.read(1024)
        except (urllib.error.URLError, OSError, errors.WebhookRedirect) as exc:
            raise errors.webhook_error(exc, url=delivery.recipient) from None
        return SendResult()
