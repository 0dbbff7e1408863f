"""Check the audit log's hash chain: every row, the chain head and the signed checkpoints."""

from django.core.management.base import BaseCommand, CommandError

from requests_app import services


class Command(BaseCommand):
    help = (
        "Verify the audit log: each row's hash, its link to the row before it, the order of "
        "the rows, the chain head and the signed checkpoints. Names the first bad row and "
        "exits non-zero when anything was edited, deleted, inserted or reordered."
    )

    def handle(self, *args, **options):
        report = services.verify_audit()
        if report.intact:
            self.stdout.write(
                f"audit log intact: {report.rows} rows, {report.checkpoints} signed checkpoints"
            )
            return
        for problem in sorted(report.problems, key=lambda p: p.position)[:20]:
            self.stderr.write(str(problem))
        raise CommandError(
            f"the audit log has been tampered with ({len(report.problems)} problems); "
            f"first bad: {report.first}"
        )
