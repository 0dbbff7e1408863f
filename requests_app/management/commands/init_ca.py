"""Create a self-signed root CA and make it the default (its key made by a key backend:
CA_KEY_DIR, or a token); or a subordinate: its key and a CSR for an offline root
(--csr-only), or signed by a CA held here (--parent)."""

from django.core.management.base import BaseCommand, CommandError

from requests_app import keys, pki, services
from requests_app.management._util import non_negative_int, positive_int, write_output


class Command(BaseCommand):
    help = (
        "Create a self-signed root CA (or a subordinate: --csr-only, --parent) and make it "
        "the default. Its key is made by the key backend (--key-backend): encrypted under "
        "CA_KEY_PASSPHRASE in CA_KEY_DIR (mode 0600) by default, or in a hardware token "
        "(pkcs11); never in the database."
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
        hierarchy = parser.add_argument_group(
            "a CA hierarchy",
            "A subordinate CA whose key is made here: signed by an outside (offline) root "
            "(--csr-only, then import_ca --certificate), or by a CA held here (--parent).",
        )
        hierarchy.add_argument(
            "--csr-only",
            action="store_true",
            help="make the key and write a CSR for an outside root to sign; the CA stays "
            "pending until import_ca --certificate completes it",
        )
        hierarchy.add_argument(
            "--out", metavar="FILE", help="where --csr-only writes the CSR (default: stdout)"
        )
        hierarchy.add_argument(
            "--parent", type=positive_int, metavar="CA_ID", help="the CA (show_ca) that signs"
        )
        hierarchy.add_argument(
            "--path-length",
            type=non_negative_int,
            metavar="N",
            help="how many CAs may follow the subordinate (default with --parent: 0)",
        )
        hierarchy.add_argument(
            "--permitted-dns",
            nargs="+",
            action="extend",
            default=[],
            metavar="NAME",
            help='DNS names the subordinate may certify: "example.com" (and names under it) '
            'or ".example.com" (only names under it)',
        )
        hierarchy.add_argument(
            "--excluded-dns",
            nargs="+",
            action="extend",
            default=[],
            metavar="NAME",
            help="DNS names the subordinate may never certify",
        )
        hierarchy.add_argument(
            "--make-default",
            action="store_true",
            help="rollover: make the new CA the default for new requests (as --force); the "
            "old one keeps its CRL and OCSP answers for what it issued",
        )
        keys.add_backend_arguments(parser)  # --key-backend, and each backend's own options

    def handle(self, *args, subject, key_type, validity_days, force, **options):
        force = force or options.get("make_default", False)
        if options.get("csr_only") or options.get("parent"):
            self._subordinate(subject, key_type, validity_days, force, options)
            return
        constrained = options.get("permitted_dns") or options.get("excluded_dns")
        if options.get("path_length") is not None or constrained:
            raise CommandError("--path-length and the name constraints are for subordinates")
        alias = options["key_backend"] or keys.DEFAULT_ALIAS
        try:
            ca = services.create_ca(
                subject,
                key_type=key_type,
                validity_days=validity_days,
                force=force,
                key_backend=alias,
                key_options=keys.backend_options(alias, options),
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
        self.stdout.write(f"key          {keys.backend_for(ca).key_location(ca)}")

    def _subordinate(self, subject, key_type, validity_days, force, options) -> None:
        constraints = {
            "path_length": options["path_length"],
            "permitted_dns": options["permitted_dns"],
            "excluded_dns": options["excluded_dns"],
        }
        if options["csr_only"] and options["parent"]:
            raise CommandError("--csr-only is for an outside root; --parent for one held here")
        alias = options["key_backend"] or keys.DEFAULT_ALIAS
        try:
            key = {"key_backend": alias, "key_options": keys.backend_options(alias, options)}
            if options["csr_only"]:
                ca = services.request_subordinate_ca(
                    subject, key_type=key_type, **constraints, **key
                )
            else:
                ca = services.create_subordinate_ca(
                    subject,
                    parent_id=options["parent"],
                    key_type=key_type,
                    validity_days=validity_days,
                    force=force,
                    **constraints,
                    **key,
                )
        except keys.CAKeyError as exc:
            raise CommandError(str(exc)) from None
        except services.ServiceError as exc:
            raise CommandError(exc.message) from None
        location = keys.backend_for(ca).key_location(ca)
        if options["csr_only"]:
            if options["out"]:
                write_output(options["out"], ca.csr_pem.encode())
                self.stderr.write(f"Wrote the CSR of CA {ca.pk} to {options['out']}")
            else:
                self.stdout.write(ca.csr_pem, ending="")
            self.stderr.write(
                f"CA {ca.pk} ({ca.name}, {ca.key_type}) is pending: have the root sign the "
                "CSR, then run import_ca --certificate FILE --chain ROOT_FILE.\n"
                f"key          {location}"
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Created subordinate CA {ca.name} ({ca.key_type}) under {ca.parent.name}, "
                "the default CA."
            )
        )
        self.stdout.write(f"subject      {ca.subject}")
        self.stdout.write(f"path length  {pki.path_length_of(ca.certificate)}")
        self.stdout.write(f"valid until  {ca.not_after:%Y-%m-%d %H:%M:%S} UTC")
        self.stdout.write(f"SHA-256      {ca.fingerprint_sha256}")
        self.stdout.write(f"key          {location}")
