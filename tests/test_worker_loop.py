"""run_worker's loop in this process: it records every task's outcome (a task whose code is
gone included), goes on after a database error, beats, and takes its heartbeat away at exit."""

from __future__ import annotations

import pytest
from django.db.utils import OperationalError
from django.tasks import TaskResultStatus
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from delivery import liveness
from delivery.backends import test as test_backend
from delivery.models import Delivery, WorkerHeartbeat
from delivery.tasks import deliver_task
from delivery.worker import ResilientWorker


def _worker() -> ResilientWorker:
    return ResilientWorker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="loop-test",
        excluded_queue_names=[],
    )


# The worker's loop closes connections left in a transaction (close_old_connections), as it
# must in production: so each test commits for real instead of running in a rolled-back one.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(pending_request):
    test_backend.outbox.clear()
    delivery = Delivery.objects.create(
        request=pending_request, backend="test", kind="request_received", recipient="a@example.test"
    )
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created)
    database = DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}})
    good = database.enqueue(deliver_task, (delivery.pk,), {})
    gone = database.enqueue(deliver_task, (delivery.pk,), {})
    DBTaskResult.objects.filter(pk=gone.id).update(task_path="delivery.tasks.no_such_task")
    yield delivery, good.id, gone.id
    test_backend.outbox.clear()


def test_the_loop_records_each_outcome_and_goes_on_after_a_database_error(queued, monkeypatch):
    """A failing heartbeat write (the database locked) costs one turn; both tasks are then
    recorded, the one whose code is gone as failed, and the heartbeat is removed at exit."""
    delivery, good, gone = queued
    real_beat = liveness.record_worker_heartbeat
    calls = []

    def flaky_beat(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        real_beat(*args, **kwargs)
        assert WorkerHeartbeat.objects.filter(worker_id="loop-test").exists()

    monkeypatch.setattr(liveness, "record_worker_heartbeat", flaky_beat)
    worker = _worker()
    worker.beat_every = 0  # beat on every turn
    worker.run()
    assert len(calls) >= 2
    assert DBTaskResult.objects.get(pk=good).status == TaskResultStatus.SUCCESSFUL
    assert DBTaskResult.objects.get(pk=good).return_value == "sent"
    failed = DBTaskResult.objects.get(pk=gone)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.exception_class_path.endswith(("ImportError", "AttributeError"))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert [m["recipient"] for m in test_backend.outbox] == ["a@example.test"]
    assert not WorkerHeartbeat.objects.exists()
