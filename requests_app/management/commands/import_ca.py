"""Import an existing root or intermediate CA (certificate, key and chain) after checking it."""

import os

from django.core.management.base import BaseCommand, CommandError

from requests_app import keys, services
from requests_app.management._util import read_input


class Command(BaseCommand):
    help = (
        "Import a CA: its certificate (PEM or DER; a PEM bundle may carry the chain after it), "
        "its private key, and the chain up to the root. The key is re-encrypted under "
        "CA_KEY_PASSPHRASE into CA_KEY_DIR and the CA becomes the default."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cert", required=True, metavar="PATH")
        parser.add_argument(
            "--key", metavar="PATH", help="PEM or DER, PKCS#8/1 (not for a key in a token)"
        )
        parser.add_argument("--chain", metavar="PATH", help="the CA's issuers, nearest first")
        parser.add_argument(
            "--key-passphrase-env",
            metavar="VAR",
            help="the environment variable holding the key's passphrase (never on the command "
            "line, where other users could read it)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="make the imported CA the default even if one exists (the old one stays)",
        )
        keys.add_backend_arguments(parser)  # --key-backend, and each backend's own options

    def handle(self, *args, cert, key, chain, key_passphrase_env, force, **options):
        passphrase = None
        if key_passphrase_env:
            passphrase = os.environ.get(key_passphrase_env)
            if not passphrase:
                raise CommandError(
                    f"the environment variable {key_passphrase_env} is not set or is empty"
                )
        cert_data, key_data = read_input(cert), read_input(key) if key else None
        chain_data = read_input(chain) if chain else None
        try:
            ca = services.import_ca(
                cert_data,
                key_data,
                chain_data=chain_data,
                key_passphrase=passphrase,
                force=force,
                key_backend=options["key_backend"],
                key_options=keys.backend_options(options["key_backend"], options),
            )
        except keys.CAKeyError as exc:
            raise CommandError(str(exc)) from None
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            self.style.SUCCESS(f"Imported CA {ca.name} ({ca.key_type}), the default CA.")
        )
        self.stdout.write(f"subject      {ca.subject}")
        self.stdout.write(f"issuer       {ca.certificate.issuer.rfc4514_string()}")
        self.stdout.write(f"chain        {len(ca.chain)} certificate(s)")
        self.stdout.write(f"valid until  {ca.not_after:%Y-%m-%d %H:%M:%S} UTC")
        self.stdout.write(f"SHA-256      {ca.fingerprint_sha256}")
        self.stdout.write(f"key file     {keys.backend_for(ca).key_location(ca)} (encrypted)")
