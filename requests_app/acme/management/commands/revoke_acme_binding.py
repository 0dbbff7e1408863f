"""Revoke an ACME external account binding: its account can no longer order."""

from django.core.management.base import BaseCommand

from requests_app.acme import services as acme_services
from requests_app.management._util import agent_user, printable, service_errors


class Command(BaseCommand):
    help = (
        "Revoke an ACME account binding by its key ID: it can no longer make an account, and "
        "the account it bound can no longer order."
    )

    def add_arguments(self, parser):
        parser.add_argument("kid", metavar="KID")
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, kid, agent, **options):
        actor = agent_user(agent)
        with service_errors():
            binding = acme_services.revoke_binding(kid.strip(), actor=actor)
        self.stdout.write(
            f"Revoked ACME binding {binding.kid} of {printable(binding.email)} "
            f"at {binding.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        )
