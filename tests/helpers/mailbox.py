"""Proof of the mailbox in tests: confirm a request's address as its requester would, and
read the code and link out of a confirmation mail."""

from __future__ import annotations

import re

from requests_app import services
from requests_app.models import CertificateRequest

#: The confirmation link as mailed: .../requests/<request ID>/confirm/<code>/
LINK = re.compile(r"https?://\S+/requests/(?P<request>[0-9A-Z]+)/confirm/(?P<code>[0-9A-Z]+)/")


def confirmed(req: CertificateRequest) -> CertificateRequest:
    """The request with its address confirmed (a fresh code, typed in), for tests about
    what happens after; requests that need no confirmation come back as they are."""
    if not req.awaits_email:
        return req
    code = services.issue_email_confirmation_code(req)
    return services.confirm_email(req, code, via="code")


def submit_confirmed(**kwargs) -> CertificateRequest:
    """services.submit_request, then the requester's confirmation of the address."""
    return confirmed(services.submit_request(**kwargs))


def _text(message) -> str:
    """The plain-text body of a Django EmailMessage or of a parsed email.message."""
    if hasattr(message, "get_body"):
        return message.get_body(preferencelist=("plain",)).get_content()
    return message.body


def _recipients(message) -> list[str]:
    if hasattr(message, "get_body"):
        return [a.strip() for a in str(message["To"]).split(",")]
    return list(message.to)


def confirmation_mails(messages, to: str) -> list:
    """The confirmation mails among messages (Django's mail.outbox or SMTPServer.messages)
    sent to address `to`, oldest first."""
    return [m for m in messages if to in _recipients(m) and LINK.search(_text(m))]


def mailed_link(messages, to: str) -> str:
    """The confirmation link of the newest confirmation mail to `to`."""
    mails = confirmation_mails(messages, to)
    assert mails, f"no confirmation mail to {to}"
    return LINK.search(_text(mails[-1]))[0]


def mailed_code(messages, to: str) -> str:
    """The code as the newest confirmation mail to `to` shows it (XXXX-XXXX-XXXX-XXXX)."""
    mails = confirmation_mails(messages, to)
    assert mails, f"no confirmation mail to {to}"
    match = re.search(r"\b([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})\b", _text(mails[-1]))
    assert match, "no code in the confirmation mail"
    return match[1]
