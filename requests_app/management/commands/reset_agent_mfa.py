"""Break glass: remove every second-factor device of an agent who lost them."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import service_errors


class Command(BaseCommand):
    help = (
        "Remove every second-factor device (authenticator apps, passkeys, recovery codes) of "
        "a user who lost them, so that they set up a new one after their password. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--reason", default="", help="why (kept in the audit row)")

    def handle(self, *args, username, reason, **options):
        with service_errors():
            removed = services.reset_agent_mfa(username, actor=None, reason=reason)
        self.stdout.write(
            self.style.SUCCESS(
                f"Removed {removed} second-factor device(s) of {username}; at the next login "
                "they must set up a new one."
            )
        )
