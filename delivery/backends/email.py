"""Email backends: the certificate attached, a retrieval link, and the notifications.

Mail goes through Django's MAILERS (the alias in OPTIONS["mailer"]), so SMTP, the console
and every django-anymail ESP work the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import smtplib
import threading
import time

from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, mailers
from django.core.mail.backends.smtp import EmailBackend as SMTPMailer
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from requests_app import downloads, expiry, links, profiles, services, throttle

from .. import mime
from .base import BaseDeliveryBackend, DeliveryError, DeliveryHeld, SendResult

#: Mail to addresses the operator chose (the agents'), which no requester can aim at a
#: stranger: not counted against MAIL_PER_RECIPIENT_PER_DAY.
UNLIMITED_KINDS = ("request_waiting",)


class BaseEmailBackend(BaseDeliveryBackend):
    """Renders templates/delivery/email/<kind>{_subject.txt,.txt,.html} and mails them."""

    default_options = {"mailer": "default", "from_email": None}

    def send(self, delivery) -> SendResult:
        if delivery.kind in self.kinds:
            self.check_daily_limit(delivery)
        return super().send(delivery)

    def check_daily_limit(self, delivery) -> None:
        """Count this mail against its recipient's day, or hold it until the next day.

        Mail an agent sends by hand is the agent's decision and is not counted."""
        if delivery.kind in UNLIMITED_KINDS or delivery.requested_by_id is not None:
            return
        if throttle.take_mail_allowance(delivery.recipient):
            return
        until = dt.datetime.fromtimestamp(throttle.next_mail_day(), tz=dt.UTC)
        raise DeliveryHeld(
            f"held: {delivery.recipient} had its {settings.MAIL_PER_RECIPIENT_PER_DAY} "
            f"messages for today (MAIL_PER_RECIPIENT_PER_DAY); sent after "
            f"{until:%Y-%m-%d %H:%M} UTC",
            until=until,
        )

    def check_options(self) -> None:
        if self.options["mailer"] not in mailers:
            raise ImproperlyConfigured(
                f"DELIVERY_BACKENDS[{self.alias!r}]: OPTIONS mailer {self.options['mailer']!r} "
                "is not in MAILERS"
            )

    def context(self, delivery) -> dict:
        req = delivery.request
        cert = delivery.certificate
        profile = None
        with contextlib.suppress(profiles.ProfileError):  # a profile removed since approval
            profile = profiles.get_profile(req.profile)
        site = settings.SITE_URL
        return {
            "delivery": delivery,
            "request": req,
            "certificate": cert,
            "profile": profile,
            "note": delivery.note,
            "site_url": site,
            "status_url": f"{site}{req.get_absolute_url()}",
            "agent_url": f"{site}{req.get_agent_url()}",
            "certificate_url": (
                f"{site}{reverse('certificate_detail', args=[cert.serial])}" if cert else ""
            ),
        }

    def attachments(self, delivery) -> list[tuple[str, bytes, str]]:
        return []

    def build_message(self, delivery) -> EmailMultiAlternatives:
        context = self.context(delivery)
        base = f"delivery/email/{delivery.kind}"
        subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string(f"{base}.txt", context),
            from_email=self.options["from_email"] or settings.DEFAULT_FROM_EMAIL,
            to=[delivery.recipient],
            # One Message-ID for every copy: a message sent twice (a worker died between the
            # server's acceptance and the commit) is recognisable as the same one.
            headers={
                "Message-ID": delivery.rfc_message_id,
                "X-CA-Portal-Delivery": delivery.public_id,
            },
        )
        message.attach_alternative(render_to_string(f"{base}.html", context), "text/html")
        for filename, content, mimetype in self.attachments(delivery):
            message.attach(filename, content, mimetype)
        # For the ESP's own dashboards; tracking never trusts it (events match by message ID).
        message.metadata = {"delivery": delivery.public_id}
        return message

    def transmit(self, delivery, message: EmailMultiAlternatives) -> SendResult:
        try:
            _send_on_kept_connection(self.options["mailer"], message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"the mail server refused the recipient: {exc.recipients}",
                permanent=all(code >= 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            raise DeliveryError(
                f"the mail server answered {exc.smtp_code} {text}", permanent=exc.smtp_code >= 500
            ) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot reach the mail server: {exc}") from None
        except Exception as exc:
            raise _anymail_error(exc) from None
        # The ESP's message ID (anymail_status), which its tracking events will name.
        status = getattr(message, "anymail_status", None)
        message_id = getattr(status, "message_id", None) if status else None
        if isinstance(message_id, set):  # one per recipient; a delivery has one recipient
            message_id = next(iter(message_id)) if len(message_id) == 1 else None
        return SendResult(message_id="" if message_id is None else str(message_id))


# --- one mail connection per worker thread, kept between deliveries ----------------------
#
# A worker sends one message per delivery. Opening a connection for each costs a TCP
# connect, EHLO and, with a real relay, a STARTTLS handshake (the raw loop in bench/ sends
# 1.3x faster over a kept connection to a local server; to a remote relay the gap is far
# wider). So each thread keeps its connection for KEEP_OPEN_SECONDS of idleness.

KEEP_OPEN_SECONDS = 30.0
_kept = threading.local()
_generation = 0  # bumped when MAILERS changes: a kept connection to the old server is dropped


@receiver(setting_changed)
def _mailers_changed(*, setting, **kwargs):
    global _generation
    if setting == "MAILERS":
        _generation += 1


def _kept_mailer(alias: str):
    """This thread's open connection for the mailer alias, and whether it was kept."""
    kept = getattr(_kept, "mailers", {}).get(alias)
    now = time.monotonic()
    if kept and kept[1] == _generation and now - kept[2] < KEEP_OPEN_SECONDS:
        return kept[0], True
    _drop_mailer(alias)
    mailer = mailers[alias]
    mailer.open()
    _kept.__dict__.setdefault("mailers", {})[alias] = (mailer, _generation, now)
    return mailer, False


def _drop_mailer(alias: str) -> None:
    kept = getattr(_kept, "mailers", {}).pop(alias, None)
    if kept:
        with contextlib.suppress(Exception):  # it is being thrown away anyway
            kept[0].close()


def _send(mailer, message: EmailMultiAlternatives) -> None:
    """Send over the mailer; an SMTP mailer gets the message's bytes from the cheaper
    writer (delivery.mime) when the message has its shape, every other mailer (anymail's
    ESPs, the console, locmem) Django's message object."""
    data = mime.smtp_bytes(message) if isinstance(mailer, SMTPMailer) else None
    if data is None:
        mailer.send_messages([message])
    else:
        mailer.connection.sendmail(message.from_email, message.to, data)


def _send_on_kept_connection(alias: str, message: EmailMultiAlternatives) -> None:
    mailer, was_kept = _kept_mailer(alias)
    try:
        _send(mailer, message)
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        _drop_mailer(alias)
        if not was_kept:
            raise
        # The server closed the idle connection we kept, which fails at the first command,
        # before anything was sent: once more on a fresh connection.
        mailer, _ = _kept_mailer(alias)
        _send(mailer, message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        # An answer to this message (a refused recipient, a 4xx or 5xx to MAIL or DATA):
        # smtplib has reset the session, and the next message goes over the same
        # connection, unless the server said it is closing it (421).
        if getattr(exc, "smtp_code", None) == 421:
            _drop_mailer(alias)
        else:
            _kept.mailers[alias] = (mailer, _generation, time.monotonic())
        raise
    except Exception:
        _drop_mailer(alias)  # its state is unknown after an error; the next send reconnects
        raise
    _kept.mailers[alias] = (mailer, _generation, time.monotonic())


def _anymail_error(exc: Exception) -> Exception:
    """Classify django-anymail's errors: a refused recipient or a 4xx answer is permanent."""
    from anymail.exceptions import AnymailError, AnymailRecipientsRefused

    if isinstance(exc, AnymailRecipientsRefused):
        return DeliveryError(f"the provider refused the recipient: {exc}", permanent=True)
    if isinstance(exc, AnymailError):
        code = getattr(exc, "status_code", None)
        return DeliveryError(
            f"the mail provider answered: {exc}", permanent=code is not None and 400 <= code < 500
        )
    return exc


class CertificateEmail(BaseEmailBackend):
    """Mail with the certificate attached (<serial>.pem and <serial>-chain.p7b)."""

    kinds = ("certificate",)

    def context(self, delivery) -> dict:
        context = super().context(delivery)
        context["pem"] = downloads.encode_certificate(delivery.certificate, "pem").data.decode()
        return context

    def attachments(self, delivery):
        cert = delivery.certificate
        pem = downloads.encode_certificate(cert, "pem")
        chain = downloads.encode_certificate(cert, "p7b")
        return [
            (pem.filename, pem.data, pem.content_type),
            (f"{cert.serial}-chain.p7b", chain.data, chain.content_type),
        ]


class LinkEmail(BaseEmailBackend):
    """Mail with a signed, time-limited link to the certificate's page."""

    kinds = ("link",)

    def context(self, delivery) -> dict:
        context = super().context(delivery)
        context["retrieval_url"] = links.retrieval_url(delivery.certificate)
        context["max_age_days"] = settings.RETRIEVAL_LINK_MAX_AGE_DAYS
        return context


class NotificationEmail(BaseEmailBackend):
    """Request received / waiting / rejected / canceled; certificate revoked (or released);
    the code that confirms the requester's address."""

    kinds = (
        "request_received",
        "request_waiting",
        "request_rejected",
        "request_canceled",
        "certificate_revoked",
        "email_confirmation",
        "expiry_reminder",
    )

    def context(self, delivery) -> dict:
        context = super().context(delivery)
        if delivery.kind == "email_confirmation":
            context.update(confirmation_context(delivery.request))
        elif delivery.kind == "expiry_reminder":
            context.update(expiry_context(delivery.certificate))
        return context


def confirmation_context(request) -> dict:
    """A new confirmation code for the request, with its link and deadline, for one mail.

    The code is made here, as the message is built, and stored only as a hash: it exists
    nowhere but in this mail. A request that no longer waits has nothing to send."""
    try:
        code = services.issue_email_confirmation_code(request)
    except services.ServiceError as exc:
        raise DeliveryError(f"no confirmation to send: {exc.message}", permanent=True) from None
    site = settings.SITE_URL
    return {
        "code": services.format_code(code),
        "confirm_url": f"{site}{reverse('confirm_email_link', args=[request.public_id, code])}",
        "confirm_page_url": f"{site}{reverse('confirm_email', args=[request.public_id])}",
        "deadline": request.confirm_email_deadline(),
        "days": settings.EMAIL_CONFIRMATION_DAYS,
    }


def expiry_context(cert) -> dict:
    """What an expiry reminder says, read when it is sent: a certificate revoked, renewed or
    expired since the reminder was queued gets none (a permanent failure that says why)."""
    now = timezone.now()
    why = None
    if cert is None:
        why = "it names no certificate"
    elif cert.status != cert.Status.VALID:
        why = f"certificate {cert.serial} was revoked after the reminder was queued"
    elif cert.not_after <= now:
        why = f"certificate {cert.serial} has expired"
    elif expiry.is_renewed(cert):
        why = f"certificate {cert.serial} was renewed after the reminder was queued"
    if why:
        raise DeliveryError(f"not sent: {why}", permanent=True)
    request = cert.issued_request
    left = cert.not_after - now
    return {
        "days_left": left.days,
        "renewal_method": expiry.renewal_method(request.channel if request else None),
        "pending_renewal": expiry.pending_renewal(cert),
        "retrieval_url": links.retrieval_url(cert),
        "max_age_days": settings.RETRIEVAL_LINK_MAX_AGE_DAYS,
        "names": ", ".join(cert.sans) or "(none)",
        "common_name": _common_name(cert),
        "thresholds": sorted({int(d) for d in settings.EXPIRY_REMINDER_DAYS}, reverse=True),
    }


def _common_name(cert) -> str:
    """What the subject line calls the certificate: its CN, else its first name, else its serial."""
    names = cert.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names and str(names[0].value).strip():
        return str(names[0].value).strip()
    if cert.sans:
        return cert.sans[0].partition(":")[2] or cert.sans[0]
    return cert.serial
