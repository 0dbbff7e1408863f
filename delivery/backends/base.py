"""The plugin contract. A delivery backend takes one Delivery row and gets it to its
recipient, or raises DeliveryError saying whether trying again could help.

The base class runs fixed steps (`send` = `build_message` then `transmit`); a backend
fills in the hooks. A third party subclasses it and names the class in DELIVERY_BACKENDS.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from delivery.models import Delivery


class DeliveryError(Exception):
    """Sending failed. permanent=True: trying again cannot help (a 5xx from SMTP, a 4xx from
    a webhook); otherwise the outbox retries with backoff.

    message is what agents read as "Last error" (delivery.errors words it); detail is the
    raw technical cause, kept in the audit row and the log only."""

    def __init__(self, message: str, *, permanent: bool = False, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.detail = detail


class DeliveryHeld(DeliveryError):
    """Not sent now, and not a failure: the recipient had its day's mail
    (MAIL_PER_RECIPIENT_PER_DAY). The outbox keeps the row pending until `until`, without
    counting it as an attempt."""

    def __init__(self, message: str, *, until: dt.datetime):
        super().__init__(message, permanent=False)
        self.until = until


@dataclass(frozen=True)
class SendResult:
    #: The provider's message ID, when it gives one (anymail's `anymail_status`).
    message_id: str = ""


class BaseDeliveryBackend:
    #: The Delivery kinds this backend can send.
    kinds: ClassVar[tuple[str, ...]] = ()
    #: Accepted OPTIONS and their defaults; anything else is refused at start-up.
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, alias: str, **options):
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            raise ImproperlyConfigured(
                f"DELIVERY_BACKENDS[{alias!r}] ({type(self).__name__}) does not accept the "
                f"OPTIONS {', '.join(unknown)}; "
                f"it accepts {', '.join(self.default_options) or 'none'}"
            )
        self.alias = alias
        self.options = {**self.default_options, **options}
        self.check_options()

    def check_options(self) -> None:
        """Refuse bad OPTIONS values with ImproperlyConfigured (the system check calls it)."""

    def default_recipient(self, delivery_request, certificate) -> str:
        """Where an automatic delivery goes: the requester's email unless a backend knows better."""
        return delivery_request.requester_email

    def send(self, delivery: Delivery) -> SendResult:
        """Build the message for this delivery and transmit it."""
        if delivery.kind not in self.kinds:
            raise DeliveryError(
                f"backend {self.alias!r} cannot send {delivery.kind!r} deliveries", permanent=True
            )
        message = self.build_message(delivery)
        return self.transmit(delivery, message)

    def build_message(self, delivery: Delivery) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement build_message()")

    def transmit(self, delivery: Delivery, message: Any) -> SendResult:
        raise NotImplementedError(f"{type(self).__name__} must implement transmit()")
