"""Sign a checkpoint of the audit chain now (run from cron; the log line is the off-host copy)."""

from django.core.management.base import BaseCommand

from requests_app import services


class Command(BaseCommand):
    help = (
        "Sign a checkpoint of the audit log's hash chain now (HMAC under AUDIT_HMAC_KEY). "
        "Checkpoints are also written every AUDIT_CHECKPOINT_ROWS rows or "
        "AUDIT_CHECKPOINT_SECONDS; keep the printed line somewhere the database is not."
    )

    def handle(self, *args, **options):
        checkpoint = services.write_audit_checkpoint(actor=None)
        self.stdout.write(
            f"audit checkpoint seq={checkpoint.seq} hash={checkpoint.hash} mac={checkpoint.mac}"
        )
