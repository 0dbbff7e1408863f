"""Cancel a pending request without a decision on its merits."""

from django.core.management.base import BaseCommand

from requests_app import services
from requests_app.management._util import agent_user, service_errors


class Command(BaseCommand):
    help = "Cancel a pending request (withdrawn, duplicate, submitted by mistake)."

    def add_arguments(self, parser):
        parser.add_argument("request_id", metavar="REQUEST_ID")
        parser.add_argument(
            "--agent", metavar="USERNAME", help="the agent to record (default: system)"
        )

    def handle(self, *args, request_id, agent, **options):
        actor = agent_user(agent)
        with service_errors():
            req = services.cancel_request(request_id, agent=actor)
        self.stdout.write(f"Canceled request {req.display_id}.")
