"""Email backends: the certificate attached, a retrieval link, and the notifications.

Mail goes through Django's MAILERS (the alias in OPTIONS["mailer"]), so SMTP, the console
and every django-anymail ESP work the same way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
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

from .. import errors, mime
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
            # The ID as every page shows it, with its hyphens (the page takes both).
            "status_url": f"{site}{reverse('request_status', args=[req.display_id])}",
            "agent_url": f"{site}{req.get_agent_url()}",
            "ca_url": f"{site}{reverse('ca_page')}",
            "certificate_url": (
                f"{site}{reverse('certificate_detail', args=[cert.serial])}" if cert else ""
            ),
            "short_name": short_name(cert) if cert else "",
            **(page_offer(req, cert) if cert else {}),
        }

    def attachments(self, delivery) -> list[tuple[str, bytes, str]]:
        return []

    def build_message(self, delivery) -> EmailMultiAlternatives:
        context = self.context(delivery)
        base = f"delivery/email/{delivery.kind}"
        subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
        message = PortalEmailMessage(
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
        except Exception as exc:
            mailer = mailers[self.options["mailer"]]
            raise errors.mail_error(
                exc,
                recipient=delivery.recipient,
                host=getattr(mailer, "host", None),
                port=getattr(mailer, "port", None),
            ) from None
        # The ESP's message ID (anymail_status), which its tracking events will name.
        status = getattr(message, "anymail_status", None)
        message_id = getattr(status, "message_id", None) if status else None
        if isinstance(message_id, set):  # one per recipient; a delivery has one recipient
            message_id = next(iter(message_id)) if len(message_id) == 1 else None
        return SendResult(message_id="" if message_id is None else str(message_id))


class PortalEmailMessage(EmailMultiAlternatives):
    """Django's message with a Subject that folds at a space when it must fold at all.

    Python's email policy moves a whole subject of 70-77 characters to the line after
    "Subject:", which some mail programs show as an empty subject. Subjects are kept short
    (templates stay within 69 characters); one that is not gets folded here, word by word."""

    def message(self, *, policy=email.policy.default):
        msg = super().message(policy=policy)
        subject = str(msg["Subject"] or "")
        if len(subject) + len("Subject: ") > policy.max_line_length and subject.isascii():
            folded = _fold_words(subject, first=len("Subject: "), width=policy.max_line_length)
            # Stored as text, not a header object: the generator writes it as it is, since
            # no line of it is too long (the documented refold_source="long" rule).
            msg._headers = [
                (name, folded if name.lower() == "subject" else value)
                for name, value in msg._headers
            ]
        return msg


def _fold_words(text: str, *, first: int, width: int) -> str:
    """text in lines of at most width characters (the first shortened by `first`), broken
    at spaces and joined by CRLF plus a space; a word longer than a line stays whole."""
    lines, line, room = [], "", width - first
    for word in text.split():
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, width - 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


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


#: Subjects stay within 69 characters ("Subject: " makes 78), so that no mail program
#: folds them; the certificate's name in one is cut to this length.
SHORT_NAME_LENGTH = 30


def short_name(cert) -> str:
    """The certificate's name for a subject line, cut with an ellipsis when long."""
    name = _common_name(cert)
    if len(name) <= SHORT_NAME_LENGTH:
        return name
    return name[: SHORT_NAME_LENGTH - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def page_offer(req, cert) -> dict:
    """What the certificate's page offers this requester, which the mail must say exactly
    (the same choice as the page's view), and the true dates of the link and the key.

    offer: "server" (downloads: full chain, PEM, DER, PKCS#7; no Import), "import" (a key
    the requester made: Import into this browser, or Download), "pkcs12" (the portal made
    the key: the .p12 for the passphrase, once), "key_gone" (that key is erased)."""
    try:
        profile = profiles.get_profile(cert.profile)
    except profiles.ProfileError:
        profile = None
    server_key = services.server_key_state(req)
    if server_key is not None:
        offer = "pkcs12" if server_key.stored else "key_gone"
    elif profile is not None and not profile.takes_hostnames:
        offer = "import"
    else:
        offer = "server"
    link_expires = timezone.now() + dt.timedelta(days=settings.RETRIEVAL_LINK_MAX_AGE_DAYS)
    key_deadline = server_key.deadline if server_key else None
    return {
        "offer": offer,
        "server_key": server_key,
        "link_expires": link_expires,
        "key_deadline": key_deadline,
        "key_retention_days": settings.SERVER_KEY_RETENTION_DAYS,
        "link_outlives_key": key_deadline is not None and link_expires > key_deadline,
    }


class CertificateEmail(BaseEmailBackend):
    """Mail with the certificate attached: <serial>.pem and <serial>-chain.p7b, and for a
    server certificate <serial>-fullchain.pem too (what nginx and Apache take); the serial
    as in file names (pki.serial_filename)."""

    kinds = ("certificate",)

    def context(self, delivery) -> dict:
        context = super().context(delivery)
        context["pem"] = downloads.encode_certificate(delivery.certificate, "pem").data.decode()
        return context

    def attachments(self, delivery):
        cert = delivery.certificate
        pem = downloads.encode_certificate(cert, "pem")
        chain = downloads.encode_certificate(cert, "p7b")
        files = [
            (pem.filename, pem.data, pem.content_type),
            (f"{cert.serial_filename}-chain.p7b", chain.data, chain.content_type),
        ]
        if page_offer(delivery.request, cert)["offer"] == "server":
            full = downloads.encode_certificate(cert, "chain")
            files.insert(1, (full.filename, full.data, full.content_type))
        return files


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
        why = f"certificate {cert.serial_colons} was revoked after the reminder was queued"
    elif cert.not_after <= now:
        why = f"certificate {cert.serial_colons} has expired"
    elif expiry.is_renewed(cert):
        why = f"certificate {cert.serial_colons} was renewed after the reminder was queued"
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
    return cert.serial_colons
