"""List issued certificates, newest first; or those about to expire, soonest first."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from requests_app import expiry
from requests_app.management._util import certificate_data, positive_int, printable, write_json
from requests_app.models import Certificate


class Command(BaseCommand):
    help = (
        "List issued certificates, newest first. With --expiring-within DAYS: the valid "
        "certificates that expire within DAYS and nobody renewed, soonest first, with how "
        "each will be renewed (for scripts and monitoring)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--profile")
        parser.add_argument("--limit", type=positive_int, default=100, metavar="N")
        parser.add_argument(
            "--expiring-within",
            type=positive_int,
            metavar="DAYS",
            help="only valid, unrenewed certificates that expire within DAYS, soonest first",
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, profile, limit, expiring_within, json, **options):
        if expiring_within:
            return self.expiring(expiring_within, profile=profile, limit=limit, json=json)
        certs = Certificate.objects.select_related("ca").order_by("-created", "-pk")
        if profile:
            certs = certs.filter(profile=profile)
        rows = list(certs[:limit])
        if json:
            write_json(self.stdout, [certificate_data(cert) for cert in rows])
            return
        if not rows:
            self.stdout.write("No certificates.")
            return
        self.stdout.write(f"{'SERIAL':<59} {'STATUS':<8} {'PROFILE':<8} {'NOT AFTER':<10} SUBJECT")
        for cert in rows:
            self.stdout.write(
                f"{cert.serial_colons:<59} {cert.status:<8} {cert.profile:<8} "
                f"{cert.not_after:%Y-%m-%d} {printable(cert.subject)}"
            )

    def expiring(self, days: int, *, profile: str | None, limit: int, json: bool) -> None:
        now = timezone.now()
        rows = list(
            expiry.expiring(now=now, within_days=days, profile=profile).select_related("ca")[:limit]
        )
        data = []
        for cert in rows:
            request = cert.issued_request
            data.append(
                certificate_data(cert)
                | {
                    "expires_in_days": round((cert.not_after - now).total_seconds() / 86400, 2),
                    "requester_email": request.requester_email if request else None,
                    "renewal_method": expiry.renewal_method(request.channel if request else None),
                    "renewal_pending": cert.pending_renewal is not None,
                    "pending_renewal_request": cert.pending_renewal,
                }
            )
        if json:
            write_json(self.stdout, data)
            return
        if not data:
            self.stdout.write(f"No certificates expire within {days} days.")
            return
        self.stdout.write(
            f"{'SERIAL':<59} {'PROFILE':<8} {'NOT AFTER':<16} {'RENEWAL':<10} {'PENDING':<7} "
            "SUBJECT"
        )
        for cert, row in zip(rows, data, strict=True):
            self.stdout.write(
                f"{cert.serial_colons:<59} {cert.profile:<8} {cert.not_after:%Y-%m-%d %H:%M} "
                f"{row['renewal_method']:<10} {'yes' if row['renewal_pending'] else 'no':<7} "
                f"{printable(cert.subject)}"
            )
