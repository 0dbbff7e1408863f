"""Send an issued certificate to its requester (or another address) by hand."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from delivery import services


class Command(BaseCommand):
    help = "Queue an email with the certificate attached, or with a retrieval link."

    def add_arguments(self, parser):
        parser.add_argument(
            "serial",
            help="the serial: 05:35:F2..., 0535F2..., 0x..., serial=... (openssl) or dec:...",
        )
        parser.add_argument("--method", choices=sorted(services.MANUAL_METHODS), default="link")
        parser.add_argument("--to", help="recipient (default: the requester)")
        parser.add_argument("--note", default="", help="a note to put into the mail")
        parser.add_argument("--agent", help="the agent to record as sender (default: system)")

    def handle(self, *args, serial, method, to, note, agent, **options):
        actor = None
        if agent:
            actor = get_user_model().objects.filter(username=agent).first()
            if actor is None:
                raise CommandError(f"no user named {agent!r}")
        try:
            delivery = services.send_certificate(
                serial, method=method, to=to, note=note, actor=actor
            )
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        delivery.refresh_from_db()
        self.stdout.write(
            f"delivery {delivery.pk}: {delivery.get_kind_display()} to {delivery.recipient}: "
            f"{delivery.status}" + (f" ({delivery.last_error})" if delivery.last_error else "")
        )
