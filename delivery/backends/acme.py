"""The mail that hands an ACME binding's credentials (key ID and HMAC key) to its requester.

The key is read from the binding (where it is sealed) as the message is built, so it is in
the mail alone: not in the outbox row, the audit log or a log line. Once the binding bound
its account, or was revoked or expired, there is nothing to send: a permanent failure."""

from __future__ import annotations

from django.conf import settings

from requests_app.acme import credentials

from .base import DeliveryError
from .email import BaseEmailBackend


class AcmeCredentialsEmail(BaseEmailBackend):
    """templates/delivery/email/acme_credentials*: the key ID, the key, the directory URL."""

    kinds = ("acme_credentials",)

    def default_recipient(self, delivery_request, certificate) -> str:
        raise DeliveryError("ACME credentials go to their binding's email", permanent=True)

    def context(self, delivery) -> dict:
        binding = delivery.acme_binding
        if binding is None:
            raise DeliveryError("this delivery names no ACME binding", permanent=True)
        try:
            kid, hmac_key = credentials.credentials_for_mail(binding)
        except credentials.CredentialsUnavailable as exc:
            raise DeliveryError(f"nothing to send: {exc.message}", permanent=True) from None
        site = settings.SITE_URL
        return {
            "delivery": delivery,
            "binding": binding,
            "kid": kid,
            "hmac_key": hmac_key,
            "note": delivery.note,
            "site_url": site,
            "directory_url": f"{site}/acme/directory",
        }
