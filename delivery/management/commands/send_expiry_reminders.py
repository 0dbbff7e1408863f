"""Mail expiry reminders to certificate holders and the agents' daily digest (from cron)."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from delivery import expiry


def iso_datetime(text: str) -> dt.datetime:
    """--now: an ISO 8601 date or date and time; without a zone, UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--now {text!r} is not an ISO 8601 date and time (e.g. 2027-01-31T09:00:00Z)"
        ) from None
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = (
        "Queue the expiry reminders that are due (EXPIRY_REMINDER_DAYS before a valid, "
        "unrenewed certificate expires; each once) and send the agents' digest of what "
        "expires within EXPIRY_DIGEST_DAYS (once a UTC day). Safe from cron at any "
        "frequency and in parallel; `make run` runs it every ten minutes."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            metavar="ISO-DATETIME",
            help="act as if it were this time (catching up, testing); default: now",
        )

    def handle(self, *args, now, **options):
        when = iso_datetime(now) if now is not None else None
        result = expiry.send_expiry_reminders(now=when)
        by_days = ", ".join(
            f"{count} at {days} day{'s' if days != 1 else ''}"
            for days, count in sorted(result.reminders.items(), reverse=True)
        )
        self.stdout.write(
            f"{result.reminders_queued} reminder(s) queued"
            + (f" ({by_days})" if by_days else "")
            + f"; {result.digests_sent} digest(s) sent"
            + (f", {result.digests_failed} to retry" if result.digests_failed else "")
            + "."
        )
