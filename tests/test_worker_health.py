"""The worker seen from outside: its heartbeat in /healthz, tasks it lost recovered by the
sweeper, and `retry_deliveries --failed` reviving failed deliveries (audited)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from delivery import liveness
from delivery.backends import test as test_backend
from delivery.models import Delivery, WorkerHeartbeat
from delivery.tasks import deliver_task
from requests_app import extensions
from requests_app.models import AuditEvent

Status = Delivery.Status
DURABLE = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def worker_check():
    """/healthz asks the worker check, as the delivery app registers it with durable tasks."""
    saved = dict(extensions._health_checks)
    extensions.register_health_check("worker", liveness.worker_health)
    yield
    extensions._health_checks.clear()
    extensions._health_checks.update(saved)


def _beat(worker_id="w1", *, age=0):
    liveness.record_worker_heartbeat(worker_id, hostname="host", pid=1, started_at=timezone.now())
    WorkerHeartbeat.objects.filter(worker_id=worker_id).update(
        last_seen=timezone.now() - dt.timedelta(seconds=age)
    )


def test_healthz_fails_without_a_recent_heartbeat_and_passes_with_one(
    client, ca, settings, worker_check
):
    """No worker, then a stale one: 503; a fresh heartbeat: 200."""
    settings.TASKS = DURABLE
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 60
    assert client.get("/healthz").status_code == 503
    assert "no worker has run" in liveness.worker_health()
    _beat(age=61)
    assert client.get("/healthz").status_code == 503
    assert liveness.worker_health() == "no worker seen for 61 s"
    _beat(age=5)
    assert client.get("/healthz").status_code == 200
    assert liveness.worker_health() is None


def test_no_worker_is_needed_when_tasks_run_in_the_process(client, ca, settings, worker_check):
    """With the immediate task backend no heartbeat is expected; the app registers no check."""
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert client.get("/healthz").status_code == 200
    assert liveness.worker_health() is None


def test_the_check_is_registered_only_for_the_durable_queue():
    """The test settings run tasks immediately, so the delivery app registered no worker check."""
    assert "worker" not in extensions._health_checks


def _task_row(delivery_id: int, *, running_for: int) -> DBTaskResult:
    backend = DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}})
    result = backend.enqueue(deliver_task, (delivery_id,), {})
    DBTaskResult.objects.filter(pk=result.id).update(
        status=TaskResultStatus.RUNNING,
        started_at=timezone.now() - dt.timedelta(seconds=running_for),
        worker_ids=["dead-worker"],
    )
    return DBTaskResult.objects.get(pk=result.id)


def test_the_sweeper_recovers_a_task_its_worker_lost(pending_request, settings):
    """A task RUNNING longer than the heartbeat age is marked failed (WorkerLost), audited once;
    a task that started lately is left to its worker."""
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 60
    lost = _task_row(1, running_for=61)
    running = _task_row(2, running_for=10)
    out = io.StringIO()
    call_command("retry_deliveries", stdout=out)
    assert "1 task(s) recovered" in out.getvalue()
    lost.refresh_from_db()
    running.refresh_from_db()
    assert lost.status == TaskResultStatus.FAILED
    assert lost.exception_class_path == "delivery.liveness.WorkerLost"
    assert "dead-worker" in lost.traceback
    assert running.status == TaskResultStatus.RUNNING
    event = AuditEvent.objects.get(action="tasks_recovered")
    assert event.details["tasks"] == [str(lost.pk)]
    call_command("retry_deliveries", stdout=io.StringIO())  # nothing more to recover
    assert AuditEvent.objects.filter(action="tasks_recovered").count() == 1


@pytest.fixture
def failed_rows(pending_request):
    test_backend.outbox.clear()
    rows = [
        Delivery.objects.create(
            request=pending_request,
            backend="test",
            kind="request_received",
            recipient=f"r{i}@example.test",
            status=Status.FAILED,
            attempts=12,
            last_error="cannot reach the mail server",
        )
        for i in range(2)
    ]
    unrecoverable = Delivery.objects.create(
        request=pending_request,
        backend="test",
        kind="request_received",
        recipient="",
        status=Status.FAILED,
        last_error="not queued: bad recipient",
    )
    yield rows, unrecoverable
    test_backend.outbox.clear()


def test_retry_now_leaves_failed_deliveries_alone(failed_rows):
    """--now retries pending deliveries only: failed ones need --failed."""
    call_command("retry_deliveries", "--now", "--sync", stdout=io.StringIO())
    assert set(Delivery.objects.filter(backend="test").values_list("status", flat=True)) == {
        Status.FAILED
    }
    assert test_backend.outbox == []


def test_retry_failed_revives_failed_deliveries_audited(failed_rows):
    """--failed puts each failed delivery with a recipient back with fresh attempts, one audit
    row each, and they are sent; one without a recipient stays failed."""
    rows, unrecoverable = failed_rows
    out = io.StringIO()
    call_command("retry_deliveries", "--failed", "--sync", stdout=out)
    assert "2 failed deliveries revived" in out.getvalue()
    for row in rows:
        row.refresh_from_db()
        assert row.status == Status.SENT
        assert row.attempts == 1
    unrecoverable.refresh_from_db()
    assert unrecoverable.status == Status.FAILED
    assert sorted(m["recipient"] for m in test_backend.outbox) == [
        "r0@example.test",
        "r1@example.test",
    ]
    revived = AuditEvent.objects.filter(action="delivery_revived")
    assert sorted(e.details["delivery"] for e in revived) == sorted(r.pk for r in rows)
    assert all(e.details["attempts"] == 12 for e in revived)
