"""Cancel the requests whose requester never confirmed the email address (run it from cron)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from requests_app import services


class Command(BaseCommand):
    help = (
        "Cancel the requests whose email address was not confirmed within "
        "EMAIL_CONFIRMATION_DAYS of submission (each gets an audit row; nobody is mailed). "
        "Run it daily or more often, e.g. from cron; `make run` runs it every minute."
    )

    def handle(self, *args, **options):
        expired = services.expire_unconfirmed_requests()
        self.stdout.write(
            f"Canceled {expired} unconfirmed request{'s' if expired != 1 else ''} "
            f"(older than {settings.EMAIL_CONFIRMATION_DAYS} days)."
        )
