"""List ACME external account bindings, newest first (never their keys)."""

from django.core.management.base import BaseCommand

from requests_app.acme import services as acme_services
from requests_app.management._util import positive_int, write_json

from ._bindings import HEADER, binding_data, binding_row


class Command(BaseCommand):
    help = "List ACME account bindings, newest first: status, names, profile, expiry, account."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=positive_int, default=100, metavar="N")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, limit, json, **options):
        rows = list(acme_services.list_bindings().select_related("account", "created_by")[:limit])
        if json:
            write_json(self.stdout, [binding_data(binding) for binding in rows])
            return
        if not rows:
            self.stdout.write("No ACME bindings.")
            return
        self.stdout.write(HEADER)
        for binding in rows:
            self.stdout.write(binding_row(binding))
