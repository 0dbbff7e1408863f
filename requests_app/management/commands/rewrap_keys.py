"""Re-encrypt the CA and OCSP responder keys at rest with the strong KDF (idempotent)."""

import os

from django.core.management.base import BaseCommand, CommandError

from requests_app import services
from requests_app.management._util import service_errors


class Command(BaseCommand):
    help = (
        "Re-encrypt every CA and OCSP responder key file with PBKDF2-HMAC-SHA256 of "
        "CA_KEY_KDF_ROUNDS rounds (files written by older versions used 2,048), optionally "
        "under a new passphrase. Files already strong are left alone; audited."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-passphrase-env",
            metavar="VAR",
            help="re-encrypt under the passphrase in this environment variable; then set "
            "CA_KEY_PASSPHRASE to it and restart every process",
        )

    def handle(self, *args, new_passphrase_env, **options):
        new_passphrase = None
        if new_passphrase_env:
            new_passphrase = os.environ.get(new_passphrase_env, "")
            if not new_passphrase:
                raise CommandError(
                    f"the environment variable {new_passphrase_env} is not set or empty"
                )
        with service_errors():
            results = services.rewrap_keys(new_passphrase=new_passphrase, actor=None)
        for result in results:
            if result.after is None:
                self.stdout.write(f"{result.name}: already {result.before}, left as it is")
            else:
                self.stdout.write(f"{result.name}: {result.before} -> {result.after}")
        changed = sum(result.after is not None for result in results)
        self.stdout.write(f"{changed} of {len(results)} key files rewrapped")
        if new_passphrase is not None and changed:
            self.stdout.write(
                "Now set CA_KEY_PASSPHRASE to the new passphrase and restart every process."
            )
