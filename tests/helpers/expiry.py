"""Certificates for the expiry tests: issued through the queue by a channel, renewed, and
the clock moved to a number of days before one expires."""

from __future__ import annotations

import datetime as dt

import time_machine
from cryptography import x509

from requests_app import services
from requests_app.models import Certificate
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed

#: The subject line every expiry reminder starts with.
REMINDER_SUBJECT = "Your certificate for "


def issue(
    agent,
    *,
    cn: str = "www.example.test",
    profile: str = "server",
    email: str = "ops@example.test",
    channel: str = "web",
    validity_days: int | None = None,
) -> Certificate:
    """A certificate issued through the queue (submitted by `channel`, approved by agent)."""
    sans = [x509.DNSName(cn)] if profile == "server" else None
    req = services.submit_request(
        profile=profile,
        csr=make_csr(cn=cn, sans=sans),
        requester_email=email,
        requester_name="Holder",
        channel=channel,
    )
    return services.approve_request(confirmed(req), agent=agent, validity_days=validity_days)


def renew(cert: Certificate, agent, *, approve: bool = True):
    """A renewal request of cert (by serial, as certmonger asks), approved when asked (for
    the profile's longest validity, so that the new certificate outlives the old one)."""
    req = confirmed(services.submit_renewal(cert, channel="web"))
    if approve:
        services.approve_request(req, agent=agent, validity_days=200)
        req.refresh_from_db()
    return req


def days_before(cert: Certificate, days: float) -> time_machine.travel:
    """The clock moved to `days` before cert expires (running on from there)."""
    return time_machine.travel(cert.not_after - dt.timedelta(days=days), tick=True)


def at(day: dt.date, hour: int = 8) -> time_machine.travel:
    """The clock stopped at that UTC day and hour."""
    return time_machine.travel(dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC), tick=False)


def reminders(messages, *, to: str | None = None) -> list:
    """The expiry reminders among an SMTP server's messages (to one address if given)."""
    return [
        m
        for m in messages
        if subject(m).startswith(REMINDER_SUBJECT) and (to is None or m["To"] == to)
    ]


def subject(message) -> str:
    """The Subject header as one line (a long one arrives folded)."""
    return " ".join(str(message["Subject"]).split())


def text(message) -> str:
    """The plain-text body with plain newlines."""
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
