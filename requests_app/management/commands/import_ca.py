"""Import an existing root or intermediate CA (certificate, key and chain) after checking it."""

import os

from django.core.management.base import BaseCommand, CommandError

from requests_app import keys, services
from requests_app.management._util import read_input


class Command(BaseCommand):
    help = (
        "Import a CA: its certificate (PEM or DER; a PEM bundle may carry the chain after it), "
        "its private key (or, with --key-backend, the key a backend already holds, e.g. in a "
        "token), and the chain up to the root; or, with --certificate alone, complete a "
        "pending CA (init_ca --csr-only). A key given as a file is re-encrypted under "
        "CA_KEY_PASSPHRASE into CA_KEY_DIR. The CA becomes the default."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cert", "--certificate", dest="cert", required=True, metavar="PATH")
        parser.add_argument(
            "--key",
            metavar="PATH",
            help="PEM or DER, PKCS#8/1 (not for a key in a token: name it with the backend's "
            "options, e.g. --key-label). With neither, the certificate completes the pending "
            "CA (init_ca --csr-only) whose key it certifies",
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
        parser.add_argument(
            "--make-default",
            action="store_true",
            help="rollover: as --force; the old CA keeps its CRL and OCSP answers",
        )
        keys.add_backend_arguments(parser)  # --key-backend, and each backend's own options

    def handle(self, *args, cert, key, chain, key_passphrase_env, force, **options):
        force = force or options.get("make_default", False)
        alias = options["key_backend"]
        try:
            key_options = keys.backend_options(alias, options)
            completes = key is None and not keys.names_key(alias, key_options)
        except keys.CAKeyError as exc:
            raise CommandError(str(exc)) from None
        if completes:  # no key given or named: the certificate of a pending CA
            self._complete(cert, chain, force, alias, key_options if alias else None)
            return
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
                key_backend=alias or keys.DEFAULT_ALIAS,
                key_options=key_options,
            )
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
        self.stdout.write(f"key          {keys.backend_for(ca).key_location(ca)}")

    def _complete(self, cert, chain, force, key_backend, key_options) -> None:
        cert_data = read_input(cert)
        chain_data = read_input(chain) if chain else None
        try:
            ca = services.complete_subordinate_ca(
                cert_data,
                chain_data=chain_data,
                force=force,
                key_backend=key_backend,
                key_options=key_options,
            )
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            self.style.SUCCESS(f"Completed CA {ca.pk} {ca.name} ({ca.key_type}), the default CA.")
        )
        self.stdout.write(f"subject      {ca.subject}")
        self.stdout.write(f"issuer       {ca.certificate.issuer.rfc4514_string()}")
        self.stdout.write(
            f"chain        {' <- '.join(c.subject.rfc4514_string() for c in ca.chain)}"
        )
        self.stdout.write(f"valid until  {ca.not_after:%Y-%m-%d %H:%M:%S} UTC")
        self.stdout.write(f"SHA-256      {ca.fingerprint_sha256}")
        self.stdout.write(f"key          {keys.backend_for(ca).key_location(ca)}")
