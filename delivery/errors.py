"""Failures of a delivery in words an agent can act on.

Every backend hands the exception it caught to one function here and raises the
DeliveryError it returns. The message is what "Last error" shows on the issued page, the
request page and the admin: one sentence saying what happened and, where it helps, what to
do, with the server's code in brackets; never a Python repr or a bytes literal. The raw
technical detail goes to `DeliveryError.detail`, which the audit row and the log keep.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import urllib.error
from http import HTTPStatus

from .backends.base import DeliveryError

#: What an SMTP reply's enhanced status code (RFC 3463) means, most specific first.
ENHANCED_MEANINGS = {
    "5.1.1": "mailbox unavailable",
    "5.1.2": "no such domain",
    "5.1.3": "the address is malformed",
    "5.1.6": "the mailbox has moved",
    "5.1.10": "no mail is accepted for this address (null MX)",
    "5.2.1": "the mailbox is disabled",
    "5.2.2": "the mailbox is full",
    "4.2.2": "the mailbox is full",
    "5.2.3": "the message is too large",
    "5.3.4": "the message is too large",
    "5.7.1": "delivery not authorized (a policy or spam filter refused it)",
    "4.7.1": "try again later (greylisting)",
    "5.7.8": "the user name or password was wrong",
    "5.7.0": "authentication or policy failure",
}
#: What a bare SMTP reply code means when no enhanced code says more.
CODE_MEANINGS = {
    421: "the server is closing the connection (busy or shutting down)",
    450: "mailbox busy or unavailable for now",
    451: "a temporary error on the server (often greylisting)",
    452: "the server is out of storage for now",
    454: "a temporary error on the server",
    530: "authentication is required",
    534: "the login method is too weak for the server",
    535: "the user name or password was wrong",
    550: "mailbox unavailable",
    551: "the user is not local",
    552: "the mailbox is full or the message too large",
    553: "the address is not allowed",
    554: "the transaction failed (often a spam or policy refusal)",
}


def _text(value) -> str:
    """Server text as a str, whether smtplib gave bytes or str; one line, no control codes."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return " ".join(str(value).split())


def _enhanced(text: str) -> str:
    """The enhanced status code (5.1.1) at the start of a reply text, or ""."""
    head = text.split(" ", 1)[0]
    parts = head.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in "245":
        return head
    return ""


def _meaning(code: int, text: str) -> tuple[str, str]:
    """(what the reply means, the code in brackets) for an SMTP reply."""
    enhanced = _enhanced(text)
    meaning = ENHANCED_MEANINGS.get(enhanced) or CODE_MEANINGS.get(code)
    if meaning is None:
        meaning = "a permanent refusal" if code >= 500 else "a temporary refusal"
    return meaning, f"{code} {enhanced}".strip()


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc!r}"[:1000]


def _where(host: str | None, port: int | None) -> str:
    if not host:
        return "the mail server"
    return f"the mail server {host}:{port}" if port else f"the mail server {host}"


# --- mail ------------------------------------------------------------------------------


def mail_error(
    exc: Exception, *, recipient: str, host: str | None = None, port: int | None = None
) -> Exception:
    """The DeliveryError for an exception from a mailer: an ESP's (django-anymail, whose
    HTTP errors are OSErrors too, so asked first), else SMTP's or the network's; any other
    exception unchanged (a fault in the portal, which the outbox reports as one)."""
    translated = esp_error(exc, recipient=recipient)
    if translated is not exc:
        return translated
    if isinstance(exc, smtplib.SMTPException | OSError):
        return smtp_error(exc, recipient=recipient, host=host, port=port)
    return exc


def smtp_error(
    exc: BaseException, *, recipient: str, host: str | None = None, port: int | None = None
) -> DeliveryError:
    """The DeliveryError for an exception raised while sending over SMTP."""
    server = _where(host, port)
    detail = _detail(exc)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = exc.recipients or {}
        code, raw = replies.get(recipient) or next(iter(replies.values()), (550, b""))
        text = _text(raw)
        meaning, codes = _meaning(code, text)
        if code >= 500:
            message = f"The mail server refused the address {recipient}: {meaning} ({codes})."
        else:
            message = (
                f"The mail server did not accept the address {recipient} for now: {meaning} "
                f"({codes}). The portal tries again later."
            )
        return DeliveryError(message, permanent=code >= 500, detail=f"{detail} {text}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        meaning, codes = _meaning(exc.smtp_code, _text(exc.smtp_error))
        return DeliveryError(
            f"{_cap(server)} refused the portal's login: {meaning} ({codes}). Check the user "
            "name and password in EMAIL_URL; the portal tries again later.",
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        meaning, codes = _meaning(exc.smtp_code, _text(exc.smtp_error))
        return DeliveryError(
            f"The mail server refused the sender address {_text(exc.sender)}: {meaning} "
            f"({codes}). Check DEFAULT_FROM_EMAIL.",
            permanent=exc.smtp_code >= 500,
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPDataError):
        meaning, codes = _meaning(exc.smtp_code, _text(exc.smtp_error))
        verdict = "refused" if exc.smtp_code >= 500 else "did not accept for now"
        return DeliveryError(
            f"The mail server {verdict} the message to {recipient}: {meaning} ({codes}).",
            permanent=exc.smtp_code >= 500,
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(
            f"{_cap(server)} does not support what EMAIL_URL asks for (STARTTLS or login): "
            f"{_text(exc)}. Check the scheme and port of EMAIL_URL.",
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(
        exc.__context__, TimeoutError
    ):  # smtplib reports a read that timed out as a disconnection
        exc = exc.__context__
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(
            f"{_cap(server)} closed the connection unexpectedly. The portal tries again later.",
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPConnectError):
        meaning, codes = _meaning(exc.smtp_code, _text(exc.smtp_error))
        return DeliveryError(
            f"{_cap(server)} refused to talk to the portal: {meaning} ({codes}). "
            "The portal tries again later.",
            detail=detail,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        meaning, codes = _meaning(exc.smtp_code, _text(exc.smtp_error))
        return DeliveryError(
            f"{_cap(server)} answered with an error: {meaning} ({codes}).",
            permanent=exc.smtp_code >= 500,
            detail=detail,
        )
    network = _network(exc, what=server, hint="EMAIL_URL")
    if network is not None:
        return DeliveryError(network, detail=detail)
    return DeliveryError(
        f"Sending to {server} failed: {_text(exc) or type(exc).__name__}.", detail=detail
    )


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _network(exc: BaseException, *, what: str, hint: str) -> str | None:
    """A sentence for a network failure (TLS, DNS, refused, timeout), or None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"The TLS certificate of {what} could not be verified "
            f"({exc.verify_message or 'certificate verify failed'}). The portal tries again "
            "later; if the server's certificate is right, the CA that signed it must be trusted "
            "by this machine."
        )
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").replace("_", " ").lower() or _text(exc)
        return (
            f"No TLS connection could be set up with {what} ({reason}). Check that {hint} "
            "uses the scheme and port the server expects (implicit TLS or STARTTLS)."
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"The name of {what} could not be found in DNS. Check the host name in {hint}; "
            "the portal tries again later."
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{_cap(what)} refused the connection: nothing listens there, or it is down. "
            "The portal tries again later."
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{_cap(what)} did not answer in time. The portal tries again later."
    if isinstance(exc, ConnectionError):
        return f"The connection to {what} was broken. The portal tries again later."
    if isinstance(exc, OSError):
        reason = exc.strerror or _text(exc) or type(exc).__name__
        return f"{_cap(what)} could not be reached ({reason}). The portal tries again later."
    return None


# --- webhooks --------------------------------------------------------------------------


def webhook_error(exc: BaseException, *, url: str) -> DeliveryError:
    """The DeliveryError for an exception raised while posting to a webhook."""
    what = f"the webhook {url}"
    detail = _detail(exc)
    if isinstance(exc, WebhookRedirect):
        return DeliveryError(
            f"The webhook {url} answered with a redirect (HTTP {exc.code}) to "
            f"{exc.location or 'nowhere'}. The portal does not follow redirects with the "
            "certificate; set the webhook's URL to the final address.",
            permanent=True,
            detail=detail,
        )
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        phrase = _phrase(code)
        if code in (401, 403):
            why = "it refused the request: check that both sides use the same webhook secret"
        elif code == 404:
            why = "there is no such address: check the webhook's URL"
        elif 400 <= code < 500:
            why = "it refused the document"
        elif 500 <= code < 600:
            why = "its server failed; the portal tries again later"
        else:
            why = "an answer the portal does not expect"
        return DeliveryError(
            f"The webhook {url} answered HTTP {code} {phrase}: {why}.",
            permanent=400 <= code < 500,
            detail=f"{detail} {_text(exc.reason)}",
        )
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    network = _network(exc, what=what, hint="the webhook's URL")
    if network is not None:
        return DeliveryError(network, detail=detail)
    reason = _text(getattr(exc, "reason", "") or exc) or type(exc).__name__
    return DeliveryError(f"Posting to the webhook {url} failed: {reason}.", detail=detail)


class WebhookRedirect(Exception):
    """The webhook answered 3xx; the certificate is not posted anywhere else."""

    def __init__(self, code: int, location: str):
        super().__init__(f"HTTP {code} to {location}")
        self.code = code
        self.location = location


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


# --- ESPs (django-anymail) ---------------------------------------------------------------


def esp_error(exc: Exception, *, recipient: str) -> Exception:
    """The DeliveryError for a django-anymail error; any other exception unchanged."""
    from anymail.exceptions import AnymailError, AnymailRecipientsRefused

    if not isinstance(exc, AnymailError):
        return exc
    name = getattr(exc, "esp_name", None)
    provider = f"The mail provider ({name})" if name else "The mail provider"
    detail = _detail(exc)
    if isinstance(exc, AnymailRecipientsRefused):
        return DeliveryError(
            f"{provider} refused the address {recipient}: it is invalid, "
            "has bounced before, or asked for no more mail.",
            permanent=True,
            detail=detail,
        )
    code = getattr(exc, "status_code", None)
    cause = exc.__cause__ or exc.__context__
    if code is None and cause is not None:
        network = _network(cause, what=provider[:1].lower() + provider[1:], hint="its settings")
        if network is not None:
            return DeliveryError(network, detail=detail)
    if code in (401, 403):
        message = (
            f"{provider} refused the portal's credentials (HTTP {code}). "
            "Check the ANYMAIL_ settings (API key, server token)."
        )
    elif code is not None and 400 <= code < 500:
        message = (
            f"{provider} refused the message (HTTP {code} {_phrase(code)}). {_first_line(exc)}"
        ).strip()
    elif code is not None:
        message = (
            f"{provider} had an error (HTTP {code} {_phrase(code)}). The portal tries again later."
        )
    else:
        message = f"{provider} reported an error: {_first_line(exc)}"
    return DeliveryError(message, permanent=code is not None and 400 <= code < 500, detail=detail)


def _first_line(exc: Exception) -> str:
    """Anymail's own description, without the response dump it appends."""
    text = str(exc).strip().splitlines()
    line = " ".join(text[0].split()) if text else ""
    return (line[:200] + "…") if len(line) > 200 else line


def unexpected_error(exc: BaseException) -> str:
    """What an agent reads for a fault in the portal itself (the traceback is in the log)."""
    return (
        f"An unexpected error in the portal stopped this delivery ({type(exc).__name__}); "
        "the details are in the server log. The portal tries again later."
    )
