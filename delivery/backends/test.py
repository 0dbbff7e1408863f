"""A real backend for tests (ours and third parties'): it runs the whole pipeline and
records what it would have sent into `outbox`, like Django's locmem mail backend."""

from __future__ import annotations

import threading

from .base import BaseDeliveryBackend, DeliveryError, SendResult

#: Every message sent by any TestBackend in this process, oldest first.
outbox: list[dict] = []
_lock = threading.Lock()


class TestBackend(BaseDeliveryBackend):
    kinds = (
        "certificate",
        "link",
        "request_received",
        "request_waiting",
        "request_rejected",
        "request_canceled",
        "certificate_revoked",
        "email_confirmation",
    )
    #: fail: "" (send), "temporary" or "permanent" (raise that DeliveryError).
    default_options = {"fail": ""}

    def build_message(self, delivery) -> dict:
        message = {
            "delivery_id": delivery.pk,
            "alias": self.alias,
            "kind": delivery.kind,
            "recipient": delivery.recipient,
            "serial": delivery.certificate.serial if delivery.certificate_id else None,
            "request_id": delivery.request.public_id,
            "note": delivery.note,
        }
        if delivery.kind == "email_confirmation":
            from .email import confirmation_context

            confirmation = confirmation_context(delivery.request)
            message.update(code=confirmation["code"], confirm_url=confirmation["confirm_url"])
        return message

    def transmit(self, delivery, message: dict) -> SendResult:
        if self.options["fail"]:
            raise DeliveryError(
                f"test backend told to fail ({self.options['fail']})",
                permanent=self.options["fail"] == "permanent",
            )
        with _lock:
            outbox.append(message)
            return SendResult(message_id=f"test-{len(outbox)}")
