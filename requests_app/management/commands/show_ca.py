"""Show every CA (the default one marked): names, keys, validity and fingerprints."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand
from django.db.models import Count, Max

from requests_app import keys, pki
from requests_app.management._util import write_json
from requests_app.models import CertificateAuthority


def pending_data(ca: CertificateAuthority) -> dict:
    """A CA waiting for its certificate: its CSR's facts."""
    return {
        "id": ca.pk,
        "name": ca.name,
        "default": False,
        "role": "subordinate, pending",
        "status": ca.status,
        "subject": ca.subject,
        "key_type": ca.key_type,
        "key_file": ca.key_filename,
        "key_backend": ca.key_backend,
        "key_location": key_location(ca),
        "csr_pem": ca.csr_pem,
        "next_step": "have the root sign its CSR, then import_ca --certificate FILE",
    }


def ca_data(ca: CertificateAuthority) -> dict:
    """What is shown about a CA; public facts only, never key material."""
    if ca.is_pending:
        return pending_data(ca)
    cert = ca.certificate
    return {
        "id": ca.pk,
        "name": ca.name,
        "default": ca.is_default,
        "subject": ca.subject,
        "issuer": cert.issuer.rfc4514_string(),
        "key_type": ca.key_type,
        "serial": ca.serial,
        "not_before": ca.not_before,
        "not_after": ca.not_after,
        "fingerprint_sha256": pki.fingerprint(cert),
        "chain": [c.subject.rfc4514_string() for c in ca.chain],
        "key_file": ca.key_filename,
        "key_backend": ca.key_backend,
        "key_location": key_location(ca),
        "certificates_issued": ca.issued,
        # The hierarchy and rollover: what the CA is, who signed it, until when it answers.
        "role": ca.role,
        "status": ca.status,
        "parent": f"{ca.parent_id} ({ca.parent.name})" if ca.parent_id else None,
        "path_length": pki.path_length_of(cert),
        "last_certificate_expires": ca.last_expiry,
    }


def key_location(ca: CertificateAuthority) -> str:
    """Where the CA's key lives (a file path; a token and the key's label), never a secret."""
    try:
        return keys.backend_for(ca).key_location(ca)
    except (ImproperlyConfigured, pki.CAError) as exc:
        return f"unknown ({exc})"


class Command(BaseCommand):
    help = (
        "Show the CAs (the default one, which signs new certificates, is marked) with their "
        "role (root or subordinate; default, pending or retired), parent and expiry."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, json, **options):
        cas = (
            CertificateAuthority.with_pending.select_related("parent")
            .annotate(issued=Count("certificates"), last_expiry=Max("certificates__not_after"))
            .order_by("-is_default", "-created", "-pk")
        )
        rows = [ca_data(ca) for ca in cas]
        if json:
            write_json(self.stdout, rows)
            return
        if not rows:
            self.stdout.write("No CA yet: run manage.py init_ca or import_ca.")
            return
        for index, row in enumerate(rows):
            if index:
                self.stdout.write("")
            mark = " (default)" if row.pop("default") else ""
            self.stdout.write(f"CA {row.pop('id')}: {row.pop('name')}{mark}")
            chain = row.pop("chain", None)
            if chain is not None:
                row["chain"] = " <- ".join(chain) if chain else "-"
            csr = row.pop("csr_pem", None)
            for key, value in row.items():
                if key in ("not_before", "not_after", "last_certificate_expires"):
                    value = f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "-"
                elif value is None:
                    value = "-"
                self.stdout.write(f"  {key.replace('_', ' '):<20} {value}")
            if csr:
                self.stdout.write(csr.rstrip())
