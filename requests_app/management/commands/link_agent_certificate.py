"""Link an agent-profile certificate to an agent account (or remove the link), so that it
logs that agent in: for agent certificates issued otherwise than by the agent's own request."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import agent_user, find_certificate, service_errors


class Command(BaseCommand):
    help = (
        "Link a valid agent-profile certificate (by serial) to the agent USER, so that it logs "
        "them in with certificate login; --unlink removes a certificate's link. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("user", metavar="USER", help="the agent's username")
        parser.add_argument("serial", metavar="SERIAL")
        parser.add_argument(
            "--unlink", action="store_true", help="remove the link instead (USER must match)"
        )
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, user, serial, unlink, agent, **options):
        actor = agent_user(agent)
        cert = find_certificate(serial)
        with service_errors():
            if unlink:
                services.unlink_agent_certificate(cert, actor=actor, user=user)
                self.stdout.write(f"Certificate {cert.serial_colons} no longer logs {user} in.")
                return
            link = services.link_agent_certificate(cert, user=user, actor=actor)
        self.stdout.write(
            f"Certificate {cert.serial_colons} ({cert.subject}) now logs "
            f"{link.user.get_username()} in, "
            f"valid until {cert.not_after:%Y-%m-%d}."
        )
