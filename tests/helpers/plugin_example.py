"""A third-party delivery backend, as the README shows: subclass, fill in two hooks."""

from delivery.backends import BaseDeliveryBackend, SendResult

#: Where this example "stores" certificates (a real one would call a secrets manager).
stored: dict[str, str] = {}


class VaultBackend(BaseDeliveryBackend):
    kinds = ("certificate",)
    default_options = {"path": "certificates/"}

    def default_recipient(self, delivery_request, certificate):
        return "https://vault.example.test/"

    def build_message(self, delivery):
        return f"{self.options['path']}{delivery.certificate.serial}", delivery.certificate.pem

    def transmit(self, delivery, message):
        key, pem = message
        stored[key] = pem
        return SendResult(message_id=key)
