"""Issue a delegated OCSP responder certificate for the default CA."""

from django.core.management.base import BaseCommand

from requests_app import pki, services
from requests_app.management._util import positive_int, service_errors


class Command(BaseCommand):
    help = (
        "Issue a delegated OCSP responder certificate (id-kp-OCSPSigning, ocsp-nocheck) for the "
        "default CA and store it with its encrypted key in CA_KEY_DIR; OCSP answers are signed "
        "with it from then on. Run it again before it expires (it replaces the previous one); "
        "an expired responder falls back to the CA key."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--validity-days",
            type=positive_int,
            default=90,
            metavar="N",
            help="lifetime of the responder certificate (default 90 days)",
        )

    def handle(self, *args, validity_days, **options):
        with service_errors():
            cert = services.create_ocsp_responder(validity_days=validity_days)
        self.stdout.write(
            f"OCSP responder {cert.subject.rfc4514_string()} (serial "
            f"{pki.serial_colons(cert.serial_number)}) valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
