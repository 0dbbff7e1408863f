"""Create an ACME external account binding: the credentials a requester's ACME client
registers with, approved for a list of names."""

import json as jsonlib

from django.core.management.base import BaseCommand

from requests_app import profiles
from requests_app.acme import services as acme_services
from requests_app.management._util import agent_user, positive_int, printable, service_errors

from ._bindings import binding_data


class Command(BaseCommand):
    help = (
        "Create ACME account credentials (External Account Binding) for a requester, "
        "approved for the names given (exact names and *.example.com patterns). Prints the "
        "key ID and the HMAC key (base64url) as its last two lines, or as JSON; the key is "
        "shown this once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="the requester's email address")
        parser.add_argument(
            "--names",
            required=True,
            nargs="+",
            metavar="NAME",
            help="names the account may obtain: www.example.com, *.example.com",
        )
        parser.add_argument("--profile", default="server", choices=profiles.profile_names())
        parser.add_argument(
            "--days", type=positive_int, default=90, help="days until the binding expires"
        )
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, email, names, profile, days, agent, json, **options):
        actor = agent_user(agent)
        with service_errors():
            binding, hmac_key = acme_services.create_binding(
                email=email, names=names, profile=profile, days=days, actor=actor
            )
        if json:
            self.stdout.write(
                jsonlib.dumps(binding_data(binding) | {"hmac_key": hmac_key}, default=str, indent=2)
            )
            return
        self.stdout.write(
            f"Created an ACME binding for {printable(binding.email)}, profile {binding.profile}, "
            f"until {binding.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        self.stdout.write(f"Names: {printable(', '.join(binding.names))}")
        self.stdout.write("The HMAC key is shown this once; give both lines to the requester:")
        self.stdout.write(binding.kid)
        self.stdout.write(hmac_key)
