"""Submit a certificate request, as a requester would on the enrollment page."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import (
    add_request_arguments,
    administrator_label,
    printable,
    read_input,
    service_errors,
)


class Command(BaseCommand):
    help = (
        "Put a CSR in the queue for an agent; the last line of output is the request ID. "
        "The administrator running the command vouches for the requester's email address: "
        "no confirmation mail is sent, and the audit row names the administrator."
    )

    def add_arguments(self, parser):
        add_request_arguments(parser)

    def handle(self, *args, profile, csr, email, name, san, **options):
        data = read_input(csr)
        with service_errors():
            req = services.submit_request(
                profile=profile,
                csr=data,
                requester_email=email,
                requester_name=name,
                extra_hostnames=san,
                channel="command",
                email_confirmed_by=administrator_label("submit_request"),
            )
        subject = printable(req.subject) if req.subject else "(no subject)"
        self.stdout.write(f"Submitted a {req.profile} request for {subject}")
        if req.requested_sans:
            self.stdout.write(f"Names: {printable(', '.join(req.requested_sans))}")
        self.stdout.write(req.display_id)
