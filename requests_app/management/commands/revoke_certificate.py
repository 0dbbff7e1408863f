"""Revoke a certificate for an RFC 5280 reason."""

import argparse

from django.core.management.base import BaseCommand
from django.utils.dateparse import parse_datetime

from requests_app import services
from requests_app.management._util import agent_user, find_certificate, service_errors
from requests_app.pki import REASONS, parse_reason


def reason_argument(text: str) -> str:
    """argparse type: a reason name in any case ("keycompromise", "key_compromise")."""
    reason = parse_reason(text)
    if reason is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(REASONS)}")
    return reason


def datetime_argument(text: str):
    """argparse type: an ISO 8601 date and time (UTC unless it names an offset)."""
    try:
        value = parse_datetime(text.strip())
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date and time (2025-01-31T12:00)")
    return value


class Command(BaseCommand):
    help = (
        "Revoke a certificate. Every reason is final except certificateHold, which "
        "release_hold undoes; a certificate on hold may still be revoked for a final reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("serial", metavar="SERIAL")
        parser.add_argument(
            "--reason",
            required=True,
            type=reason_argument,
            metavar="REASON",
            help=f"one of {', '.join(REASONS)}",
        )
        parser.add_argument(
            "--invalidity-date",
            type=datetime_argument,
            metavar="ISO",
            help="when the key was (or may have been) compromised, e.g. 2025-01-31T12:00Z",
        )
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, serial, reason, invalidity_date, agent, **options):
        actor = agent_user(agent)
        cert = find_certificate(serial)
        with service_errors():
            cert = services.revoke_certificate(
                cert, reason=reason, actor=actor, invalidity_date=invalidity_date
            )
        self.stdout.write(
            f"Revoked certificate {cert.serial_colons} ({cert.revocation_reason}) "
            f"at {cert.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
