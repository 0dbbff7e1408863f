"""Show one request with everything known about it, including its audit history."""

import json as jsonlib

from django.core.management.base import BaseCommand

from requests_app.management._util import find_request, printable, request_data, write_json


class Command(BaseCommand):
    help = "Show a request: its fields, the CSR's details, the decision and the audit history."

    def add_arguments(self, parser):
        parser.add_argument("request_id", metavar="REQUEST_ID")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, request_id, json, **options):
        data = request_data(find_request(request_id), history=True)
        if json:
            write_json(self.stdout, data)
            return
        history = data.pop("history")
        csr_pem = data.pop("csr_pem")
        width = max(len(key) for key in data)
        for key, value in data.items():
            if isinstance(value, list):
                value = ", ".join(value)
            elif value is None or value == "":
                value = "-"
            self.stdout.write(f"{key.replace('_', ' '):<{width}}  {printable(value)}")
        self.stdout.write("history:")
        for event in history:
            details = jsonlib.dumps(event["details"], sort_keys=True)
            ip = f" from {event['ip']}" if event["ip"] else ""
            self.stdout.write(
                f"  {event['time']:%Y-%m-%d %H:%M:%S} {event['actor']} {event['action']}{ip} "
                f"{details}"
            )
        self.stdout.write(csr_pem.rstrip())
