"""Create an agent account: a staff user in the group "Certificate Manager Agents", and print
the one-time enrolment link through which the agent sets a password and a second factor."""

import getpass
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from requests_app import services
from requests_app.management._util import service_errors

PROMPT_ATTEMPTS = 3


class Command(BaseCommand):
    help = (
        'Create an agent: a staff user in the group "Certificate Manager Agents", who can '
        "approve, reject and cancel requests on the agent pages and in the admin. Prints a "
        "one-time enrolment link (valid AGENT_ENROLMENT_LINK_HOURS) where the agent chooses "
        "a password and sets up a second factor."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", required=True)
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="set the password now, from this environment variable (no link is needed)",
        )
        parser.add_argument(
            "--prompt-password",
            action="store_true",
            help="set the password now, typed twice at a prompt (no link is needed)",
        )

    def handle(self, *args, username, email, password_env, prompt_password, **options):
        model = get_user_model()
        # Checked before prompting too, so nobody types a password twice for nothing.
        if model.objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} already exists")
        if password_env:
            password = os.environ.get(password_env, "")
            if not password:
                raise CommandError(f"the environment variable {password_env} is not set or empty")
        elif prompt_password:
            password = self.prompt_password(model(username=username, email=email))
        else:
            password = None  # the agent chooses it through the enrolment link
        with service_errors():
            user = services.create_agent(username, email=email, password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created agent {user.get_username()} <{user.email}> in the group "
                f'"{services.AGENTS_GROUP}" (staff: may use the admin).'
            )
        )
        if password is None:
            link = settings.SITE_URL + services.enrolment_link_path(user)
            self.stdout.write(
                f"One-time enrolment link (valid {settings.AGENT_ENROLMENT_LINK_HOURS} hours; "
                f"give it to {user.get_username()} only):\n{link}"
            )
        else:
            self.stdout.write(
                "At the first login the agent sets up a second factor (app or passkey)."
            )

    def prompt_password(self, user) -> str:
        """Ask twice; refuse a mismatch or a password Django's validators reject."""
        for _ in range(PROMPT_ATTEMPTS):
            try:
                password = getpass.getpass("Password: ")
                again = getpass.getpass("Password (again): ")
            except (EOFError, KeyboardInterrupt):
                raise CommandError("aborted: no password given") from None
            if password != again:
                self.stderr.write("Error: the two passwords do not match.")
                continue
            if not password.strip():
                self.stderr.write("Error: the password must not be blank.")
                continue
            try:
                validate_password(password, user)
            except ValidationError as exc:
                self.stderr.write("Error: " + " ".join(exc.messages))
                continue
            return password
        raise CommandError(f"no acceptable password after {PROMPT_ATTEMPTS} attempts")
