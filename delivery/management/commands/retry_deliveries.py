"""Find due and stuck deliveries and hand them to the worker (safe from cron, in parallel)."""

from django.core.management.base import BaseCommand

from delivery import liveness, services


class Command(BaseCommand):
    help = (
        "Recover tasks whose worker died, then enqueue pending deliveries that are due and "
        "deliveries whose worker lease expired. --now makes every pending delivery due at "
        "once; --failed also puts failed deliveries back in the queue (audited); --sync "
        "sends them in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", action="store_true", help="retry every pending delivery now")
        parser.add_argument(
            "--failed",
            action="store_true",
            help="also revive failed deliveries (fresh attempts, one audit row each)",
        )
        parser.add_argument(
            "--sync", action="store_true", help="send in this process instead of enqueuing"
        )

    def handle(self, *args, now, failed, sync, **options):
        lost = liveness.recover_lost_tasks()
        if lost:
            self.stdout.write(f"{len(lost)} task(s) recovered from a lost worker")
        if failed:
            revived = services.revive_failed_deliveries()
            self.stdout.write(f"{len(revived)} failed deliveries revived")
        ids = services.due_delivery_ids(everything=now)
        outcomes: dict[str, int] = {}
        if sync:  # in batches, as the worker sends them
            statuses = services.deliver_many(ids)
            results = [statuses.get(delivery_id, "not-claimed") for delivery_id in ids]
        else:
            for delivery_id in ids:
                services.enqueue(delivery_id)
            results = ["enqueued"] * len(ids)
        for outcome in results:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        summary = ", ".join(f"{count} {what}" for what, count in sorted(outcomes.items()))
        self.stdout.write(f"{len(ids)} due deliveries" + (f": {summary}" if summary else ""))
