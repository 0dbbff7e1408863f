"""Erase server-made private keys that were not downloaded in time (run it daily from cron)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from requests_app import services


class Command(BaseCommand):
    help = (
        "Erase the stored private keys not downloaded within SERVER_KEY_RETENTION_DAYS of "
        "issue, and those of rejected or canceled requests. Run it daily, e.g. from cron."
    )

    def handle(self, *args, **options):
        erased = services.erase_expired_server_keys()
        self.stdout.write(
            f"Erased {erased} private key{'s' if erased != 1 else ''} "
            f"(kept for {settings.SERVER_KEY_RETENTION_DAYS} days after issue)."
        )
