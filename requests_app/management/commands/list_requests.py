"""List requests in the queue, newest first."""

from django.core.management.base import BaseCommand

from requests_app.management._util import positive_int, printable, request_data, write_json
from requests_app.models import CertificateRequest


class Command(BaseCommand):
    help = (
        "List certificate requests, newest first (those awaiting their requester's email "
        "confirmation only with --status awaiting_email)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--status", choices=CertificateRequest.Status.values)
        parser.add_argument("--profile")
        parser.add_argument("--limit", type=positive_int, default=50, metavar="N")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, status, profile, limit, json, **options):
        requests = CertificateRequest.objects.select_related("certificate", "acted_by")
        if status:
            requests = requests.filter(status=status)
        else:  # not the agents' business until the requester confirms the address
            requests = requests.exclude(status__in=CertificateRequest.NOT_IN_QUEUE)
        if profile:
            requests = requests.filter(profile=profile)
        rows = list(requests.order_by("-submitted_at", "-pk")[:limit])
        if json:
            write_json(self.stdout, [request_data(req) for req in rows])
            return
        if not rows:
            self.stdout.write("No requests.")
            return
        self.stdout.write(
            f"{'REQUEST ID':<24} {'STATUS':<9} {'PROFILE':<8} {'SUBMITTED':<16} "
            f"{'REQUESTER':<30} SUBJECT"
        )
        for req in rows:
            self.stdout.write(
                f"{req.display_id:<24} {req.status:<9} {req.profile:<8} "
                f"{req.submitted_at:%Y-%m-%d %H:%M} {printable(req.requester_email):<30} "
                f"{printable(req.subject)}"
            )
