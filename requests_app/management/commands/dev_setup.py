"""Make a development portal usable: a CA and an agent account, each only if missing."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from requests_app import services
from requests_app.models import CertificateAuthority


class Command(BaseCommand):
    help = "Create a development CA and an agent account if there are none (used by make run)."

    def add_arguments(self, parser):
        parser.add_argument("--subject", default="CN=ca-portal Development CA,O=ca-portal")
        parser.add_argument("--agent", default="agent")

    def handle(self, *args, subject, agent, **options):
        if not CertificateAuthority.objects.filter(is_default=True).exists():
            try:
                ca = services.create_ca(subject, key_type="p256")
            except services.ServiceError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(f"Created the development CA: {ca.subject}")
        if not get_user_model().objects.filter(username=agent).exists():
            password = secrets.token_urlsafe(12)
            try:
                services.create_agent(agent, email=f"{agent}@localhost", password=password)
            except services.ServiceError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the agent account (shown once):\n"
                    f"  username: {agent}\n  password: {password}\n"
                    f"Log in at /accounts/login/ (agent pages at /agent/, admin at /admin/)."
                )
            )
            if settings.AGENT_REQUIRE_MFA:
                self.stdout.write(
                    "At the first login, set up a second factor (an authenticator app; passkeys "
                    "need http://localhost:8000 rather than 127.0.0.1)."
                )
            else:
                self.stdout.write(
                    "AGENT_REQUIRE_MFA=False (development): no second factor is asked for."
                )
