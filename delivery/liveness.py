"""Whether the delivery workers are alive, and what to do about a task whose worker died.

A worker (`manage.py run_worker`, delivery/worker.py) writes a heartbeat between tasks;
/healthz fails when none is recent (`worker_health`), and `retry_deliveries` takes a task
left RUNNING longer than WORKER_HEARTBEAT_MAX_AGE_SECONDS as lost (`recover_lost_tasks`),
after which the outbox's own lease lets the sweeper send its delivery again. Split from
delivery/services.py, which owns the outbox rows themselves.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from requests_app.services import audit

from .models import WorkerHeartbeat

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker running a task stopped (killed, crashed, its machine gone) before the
    task finished; recorded as the task's error by recover_lost_tasks."""


def heartbeat_max_age() -> dt.timedelta:
    return dt.timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS)


def record_worker_heartbeat(worker_id: str, *, hostname: str, pid: int, started_at) -> None:
    """A worker is alive (liveness bookkeeping: no audit row, no signal)."""
    now = timezone.now()
    updated = WorkerHeartbeat.objects.filter(worker_id=worker_id).update(last_seen=now)
    if not updated:
        WorkerHeartbeat.objects.update_or_create(
            worker_id=worker_id,
            defaults={
                "hostname": hostname[:255],
                "pid": pid,
                "started_at": started_at,
                "last_seen": now,
            },
        )


def forget_worker(worker_id: str) -> None:
    """A worker stopped cleanly."""
    WorkerHeartbeat.objects.filter(worker_id=worker_id).delete()


def durable_tasks() -> bool:
    """True when tasks wait in the database for a worker (not run in the web process)."""
    backend = str(settings.TASKS.get("default", {}).get("BACKEND", ""))
    return backend.startswith("django_tasks_db.")


def worker_health() -> str | None:
    """For /healthz: None when a worker was seen lately (or no worker is needed), else why not."""
    if not durable_tasks():
        return None
    last = WorkerHeartbeat.objects.order_by("-last_seen").values_list("last_seen", flat=True)
    last_seen = last.first()
    if last_seen is None:
        return "no worker has run (start manage.py run_worker)"
    silent = timezone.now() - last_seen
    if silent > heartbeat_max_age():
        return f"no worker seen for {int(silent.total_seconds())} s"
    return None


@transaction.atomic
def recover_lost_tasks(*, now: dt.datetime | None = None) -> list[str]:
    """Task rows left RUNNING by a worker that died (kill -9, a crash): a worker beats
    between tasks, so a task running longer than WORKER_HEARTBEAT_MAX_AGE_SECONDS has lost
    its worker. Each is marked failed (WorkerLost); a delivery it was sending stays the
    outbox's business: its lease expires and the sweeper sends it again. Old heartbeats
    are dropped. Returns the recovered task IDs (one audit row names them)."""
    from django.tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    now = now or timezone.now()
    cutoff = now - heartbeat_max_age()
    lost = list(
        DBTaskResult.objects.select_for_update(skip_locked=True)
        .filter(status=TaskResultStatus.RUNNING, started_at__lt=cutoff)
        .order_by("started_at")
    )
    recovered = []
    for row in lost:
        error = WorkerLost(
            f"worker {', '.join(row.worker_ids[-1:]) or '?'} stopped during this task "
            f"(running since {row.started_at.isoformat()}, no heartbeat since)"
        )
        updated = DBTaskResult.objects.filter(
            pk=row.pk, status=TaskResultStatus.RUNNING, started_at=row.started_at
        ).update(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            return_value=None,
            exception_class_path=f"{__name__}.WorkerLost",
            traceback=f"{__name__}.WorkerLost: {error}\n",
        )
        if updated:
            recovered.append(str(row.pk))
    if recovered:
        audit(
            "tasks_recovered",
            actor=None,
            tasks=recovered,
            reason="their worker stopped before they finished",
        )
        logger.warning("recovered %s task(s) whose worker was lost: %s", len(recovered), recovered)
    WorkerHeartbeat.objects.filter(last_seen__lt=now - dt.timedelta(days=1)).delete()
    return recovered
