"""Sign new CRLs where they are due (for cron), or for every CA with --force."""

from django.core.management.base import BaseCommand, CommandError

from requests_app import pki, services
from requests_app.models import CertificateAuthority


class Command(BaseCommand):
    help = (
        "Sign a new CRL for each CA whose newest CRL is missing, past half its lifetime, or "
        "older than a revocation; --force signs one for every CA. Run it from cron, e.g. hourly."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="sign a new CRL for every CA")

    def handle(self, *args, force, **options):
        now = pki.utcnow()
        authorities = list(CertificateAuthority.objects.filter(not_after__gt=now).order_by("pk"))
        if not authorities:
            raise CommandError("no CA exists yet: run manage.py init_ca or import_ca first")
        failed = []
        for ca in authorities:
            try:
                current, made = services.publish_crl(ca, force=force, renew_early=True)
            except services.ServiceError as exc:
                self.stderr.write(f"{ca.name}: cannot sign its CRL: {exc}")
                failed.append(ca.name)
                continue
            what = "signed" if made else "is current:"
            self.stdout.write(
                f"{ca.name}: CRL {current.number} {what} next update "
                f"{current.next_update:%Y-%m-%d %H:%M:%S} UTC"
            )
        if failed:
            raise CommandError(f"no new CRL for {', '.join(failed)}")
