"""Submit and approve in one step (the last line of output is the serial)."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import (
    add_request_arguments,
    administrator_label,
    positive_int,
    printable,
    read_input,
    service_errors,
)


class Command(BaseCommand):
    help = (
        "Issue a certificate for a CSR at once, without the agent queue (recorded as a "
        "request approved by the system); the last line of output is the serial number."
    )

    def add_arguments(self, parser):
        add_request_arguments(parser)
        parser.add_argument(
            "--validity-days", type=positive_int, metavar="N", help="within the profile maximum"
        )

    def handle(self, *args, profile, csr, email, name, san, validity_days, **options):
        data = read_input(csr)
        with service_errors():
            cert = services.issue_certificate(
                profile=profile,
                csr=data,
                requester_email=email,
                requester_name=name,
                extra_hostnames=san,
                validity_days=validity_days,
                email_confirmed_by=administrator_label("issue_certificate"),
            )
        self.stdout.write(
            f"Issued {printable(cert.subject)} ({printable(', '.join(cert.sans)) or 'no SANs'}) "
            "as request "
            f"{cert.request.display_id}, valid until {cert.not_after:%Y-%m-%d}"
        )
        self.stdout.write(cert.serial_colons)
