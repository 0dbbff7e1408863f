"""Create a self-signed root CA and make it the default (the key goes to CA_KEY_DIR)."""

from django.core.management.base import BaseCommand, CommandError

from requests_app import keys, pki, services
from requests_app.management._util import positive_int


class Command(BaseCommand):
    help = (
        "Create a self-signed root CA and make it the default. Its key is stored encrypted "
        "under CA_KEY_PASSPHRASE in CA_KEY_DIR (mode 0600), never in the database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--subject",
            required=True,
            metavar="DN",
            help='the CA\'s name, e.g. "CN=Example Root CA,O=Example,C=US"',
        )
        parser.add_argument("--key-type", choices=pki.CA_KEY_TYPES, default="p256")
        parser.add_argument("--validity-days", type=positive_int, default=3650, metavar="N")
        parser.add_argument(
            "--force",
            action="store_true",
            help="make the new CA the default even if one exists (the old one stays)",
        )
        keys.add_backend_arguments(parser)  # --key-backend, and each backend's own options

    def handle(self, *args, subject, key_type, validity_days, force, **options):
        try:
            ca = services.create_ca(
                subject,
                key_type=key_type,
                validity_days=validity_days,
                force=force,
                key_backend=options["key_backend"],
                key_options=keys.backend_options(options["key_backend"], options),
            )
        except keys.CAKeyError as exc:
            raise CommandError(str(exc)) from None
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            self.style.SUCCESS(f"Created CA {ca.name} ({ca.key_type}), the default CA.")
        )
        self.stdout.write(f"subject      {ca.subject}")
        self.stdout.write(f"valid until  {ca.not_after:%Y-%m-%d %H:%M:%S} UTC")
        self.stdout.write(f"SHA-256      {ca.fingerprint_sha256}")
        self.stdout.write(f"key file     {keys.backend_for(ca).key_location(ca)} (encrypted)")
