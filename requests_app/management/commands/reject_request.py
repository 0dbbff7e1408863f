"""Reject a pending request; the reason is shown to the requester."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import agent_user, service_errors


class Command(BaseCommand):
    help = "Reject a pending request with a reason the requester will see."

    def add_arguments(self, parser):
        parser.add_argument("request_id", metavar="REQUEST_ID")
        parser.add_argument("--reason", required=True, metavar="TEXT")
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, request_id, reason, agent, **options):
        actor = agent_user(agent)
        with service_errors():
            req = services.reject_request(request_id, agent=actor, reason=reason)
        self.stdout.write(f"Rejected request {req.display_id}: {req.agent_note}")
