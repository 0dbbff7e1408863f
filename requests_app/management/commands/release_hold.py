"""Release the hold on a certificate (revoked with certificateHold): it is valid again."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import agent_user, find_certificate, service_errors


class Command(BaseCommand):
    help = "Take a certificate off hold; it becomes valid again and leaves the CRL."

    def add_arguments(self, parser):
        parser.add_argument("serial", metavar="SERIAL")
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, serial, agent, **options):
        actor = agent_user(agent)
        cert = find_certificate(serial)
        with service_errors():
            cert = services.release_hold(cert, actor=actor)
        self.stdout.write(
            f"Released the hold on certificate {cert.serial_colons}: it is valid again"
        )
