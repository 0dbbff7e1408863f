"""Submit a certificate request, as a requester would on the enrollment page."""

from django.core.management.base import BaseCommand

from requests_app import profiles, services
from requests_app.management._util import read_input, service_errors


class Command(BaseCommand):
    help = "Put a CSR in the queue for an agent; the last line of output is the request ID."

    def add_arguments(self, parser):
        parser.add_argument("--profile", required=True, choices=profiles.profile_names())
        parser.add_argument("--csr", required=True, metavar="PATH", help='PEM or DER; "-": stdin')
        parser.add_argument("--email", required=True, help="the requester's email address")
        parser.add_argument("--name", default="", help="the requester's name")
        parser.add_argument(
            "--san",
            action="append",
            default=[],
            metavar="NAME",
            help="an extra hostname or IP address (server profile); repeat for more",
        )

    def handle(self, *args, profile, csr, email, name, san, **options):
        data = read_input(csr)
        with service_errors():
            req = services.submit_request(
                profile=profile,
                csr=data,
                requester_email=email,
                requester_name=name,
                extra_hostnames=san,
            )
        self.stdout.write(f"Submitted a {req.profile} request for {req.subject or '(no subject)'}")
        if req.requested_sans:
            self.stdout.write(f"Names: {', '.join(req.requested_sans)}")
        self.stdout.write(req.display_id)
