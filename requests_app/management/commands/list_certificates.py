"""List issued certificates, newest first."""

from django.core.management.base import BaseCommand

from requests_app.management._util import certificate_data, positive_int, printable, write_json
from requests_app.models import Certificate


class Command(BaseCommand):
    help = "List issued certificates, newest first."

    def add_arguments(self, parser):
        parser.add_argument("--profile")
        parser.add_argument("--limit", type=positive_int, default=100, metavar="N")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, profile, limit, json, **options):
        certs = Certificate.objects.select_related("ca").order_by("-created", "-pk")
        if profile:
            certs = certs.filter(profile=profile)
        rows = list(certs[:limit])
        if json:
            write_json(self.stdout, [certificate_data(cert) for cert in rows])
            return
        if not rows:
            self.stdout.write("No certificates.")
            return
        self.stdout.write(f"{'SERIAL':<41} {'STATUS':<8} {'PROFILE':<8} {'NOT AFTER':<10} SUBJECT")
        for cert in rows:
            self.stdout.write(
                f"{cert.serial:<41} {cert.status:<8} {cert.profile:<8} "
                f"{cert.not_after:%Y-%m-%d} {printable(cert.subject)}"
            )
