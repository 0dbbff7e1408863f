"""Approve a pending request (the last line of output is the serial), or all of them."""

from django.core.management.base import BaseCommand, CommandError

from requests_app import services
from requests_app.management._util import (
    ProgressBar,
    agent_user,
    positive_int,
    printable,
    service_errors,
)
from requests_app.models import format_public_id


class Command(BaseCommand):
    help = (
        "Approve a pending request and issue its certificate; the last line of output is "
        "the serial number. --all-pending approves the whole queue, oldest first."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("request_id", nargs="?", metavar="REQUEST_ID")
        which.add_argument("--all-pending", action="store_true")
        parser.add_argument(
            "--validity-days", type=positive_int, metavar="N", help="within the profile maximum"
        )
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, request_id, all_pending, validity_days, agent, **options):
        actor = agent_user(agent)
        if all_pending:
            if validity_days is not None:
                raise CommandError("--validity-days applies to one request, not --all-pending")
            self.approve_all(actor)
            return
        with service_errors():
            cert = services.approve_request(request_id, agent=actor, validity_days=validity_days)
        self.stdout.write(
            f"Approved request {cert.request.display_id}: issued {printable(cert.subject)} "
            f"({printable(', '.join(cert.sans)) or 'no SANs'}), "
            f"valid until {cert.not_after:%Y-%m-%d}"
        )
        self.stdout.write(cert.serial_colons)

    def approve_all(self, actor) -> None:
        with service_errors():  # no CA, or its key cannot be opened: nothing was signed
            result = services.approve_all_pending(agent=actor, progress=ProgressBar(self.stdout))
        self.stdout.write(
            f"Approved {len(result.approved)}, refused {len(result.refused)} "
            f"pending request{'s' if len(result.refused) != 1 else ''}."
        )
        for cert in result.approved:
            self.stdout.write(f"  approved {cert.request.display_id}: serial {cert.serial_colons}")
        for public_id, why in result.refused:
            self.stdout.write(f"  refused {format_public_id(public_id)}: {printable(why)}")
