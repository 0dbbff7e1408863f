"""The background worker: django-tasks-db's db_worker loop, made to stay up and be seen.

- It survives a locked SQLite database and a dropped PostgreSQL connection: an error from
  the database in one turn of the loop is logged, the connection is dropped, and the loop
  goes on after a backoff (db_worker exits on the first one that is not a lock on its claim).
- A task's result is recorded through such errors too, for a while (retry_database).
- It writes a heartbeat (WorkerHeartbeat) between tasks, at most every quarter of
  WORKER_HEARTBEAT_MAX_AGE_SECONDS: /healthz fails when no worker beat lately, and
  `retry_deliveries` takes a task left RUNNING longer than that as lost (recover_lost_tasks).
- It runs the ready delivery tasks DELIVERY_BATCH_SIZE at a time: one claim of their task
  rows, one batch of deliveries (delivery.sending: one claim statement, one kept mail
  connection, one record), one UPDATE per distinct result; other tasks run one by one.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.db import close_old_connections, transaction
from django.db.utils import OperationalError
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.compat import TaskContext, task_finished, task_started
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from . import liveness, sending, services
from .resilience import DATABASE_ERRORS, backoff_delay, fresh_connection, retry_database

logger = logging.getLogger("delivery.worker")
#: The task whose ready rows a worker runs DELIVERY_BATCH_SIZE at a time.
DELIVER_TASK = "delivery.tasks.deliver_task"


class ResilientWorker(Worker):
    """db_worker's Worker with a heartbeat and a loop that outlives database errors."""

    #: The longest wait between two tries after consecutive database errors.
    max_backoff = 30.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = timezone.now()
        self.beat_every = max(0.5, settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS / 4)
        self._last_beat = -math.inf
        self.failures = 0

    def run(self) -> None:
        logger.info("Starting worker worker_id=%s queues=%s", self.worker_id, self.queue_names)
        if self.startup_delay and self.interval:
            time.sleep(random.random())  # noqa: S311 - spreads workers started together
        try:
            while self.running:
                try:
                    if not self.step():
                        return
                    self.failures = 0
                except DATABASE_ERRORS as exc:
                    self.failures += 1
                    delay = backoff_delay(self.failures, first=0.5, maximum=self.max_backoff)
                    logger.warning(
                        "worker %s: the database failed (%s: %s); trying again in %.1f s",
                        self.worker_id,
                        type(exc).__name__,
                        str(exc).strip(),
                        delay,
                    )
                    fresh_connection()
                    if self.running:
                        time.sleep(delay)
        finally:
            self.goodbye()

    def step(self) -> bool:
        """One turn of db_worker's loop; False when the worker is done (--batch, --max-tasks)."""
        close_old_connections()  # dropped or expired connections, right after waking up
        self.beat()
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)

        task_result = None
        batch: list[DBTaskResult] = []
        retrieved = False
        with exclusive_transaction(tasks.db):
            try:
                task_result = tasks.get_locked()
                retrieved = True
                if task_result is not None and task_result.task_path == DELIVER_TASK:
                    batch = self.claim_delivery_tasks(tasks, task_result)
                elif task_result is not None:
                    task_result.claim(self.worker_id)  # no other worker runs it now
            except OperationalError as exc:
                if not is_locked_database_exception(exc):
                    raise
                task_result, batch = None, []  # another process holds the write lock: next turn

        if batch:
            self.run_delivery_tasks(batch)
            self.beat()
        elif task_result is not None:
            self.run_task(task_result)
            self.beat()
        if self.batch and retrieved and task_result is None:
            logger.info("No more tasks to run for worker_id=%s - exiting.", self.worker_id)
            return False
        if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
            logger.info("Ran %d tasks on worker_id=%s - exiting.", self._run_tasks, self.worker_id)
            return False
        close_old_connections()
        if self.running and task_result is None:
            time.sleep(self.interval)
        return True

    def run_task(self, db_task_result: DBTaskResult) -> None:
        """Run the task and record its result, as db_worker does, except that the record is
        retried through a locked or dropped database (while it fails the row stays RUNNING,
        and retry_deliveries would recover it)."""
        self.running_task = True
        try:
            try:
                task = db_task_result.task
                task_result = db_task_result.task_result
                backend_type = task.get_backend()
                task_started.send(sender=backend_type, task_result=task_result)
                if task.takes_context:
                    return_value = task.call(
                        TaskContext(task_result=task_result),
                        *task_result.args,
                        **task_result.kwargs,
                    )
                else:
                    return_value = task.call(*task_result.args, **task_result.kwargs)
                # Inside the try, as in db_worker: a result that cannot be stored fails the task.
                self.record(db_task_result, lambda: db_task_result.set_successful(return_value))
                task_finished.send(sender=backend_type, task_result=db_task_result.task_result)
            except BaseException as exc:  # as db_worker: a failed task is recorded, not raised
                self.record(db_task_result, lambda error=exc: db_task_result.set_failed(error))
                try:
                    sender = type(db_task_result.task.get_backend())
                    finished = db_task_result.task_result
                except (ImportError, SuspiciousOperation):
                    logger.exception("Task id=%s failed unexpectedly", db_task_result.id)
                else:
                    task_finished.send(sender=sender, task_result=finished)
        finally:
            self.running_task = False
            self._run_tasks += 1

    def claim_delivery_tasks(self, tasks, first: DBTaskResult) -> list[DBTaskResult]:
        """The first ready delivery task and up to DELIVERY_BATCH_SIZE - 1 more, claimed for
        this worker with one UPDATE (inside the caller's locking transaction)."""
        more = list(
            tasks.filter(task_path=DELIVER_TASK)
            .exclude(pk=first.pk)
            .select_for_update(skip_locked=True)[: sending.batch_size() - 1]
        )
        batch = [first, *more]
        now = timezone.now()
        # A ready row has never run (django-tasks-db does not retry), so no worker IDs yet.
        DBTaskResult.objects.filter(pk__in=[row.pk for row in batch]).update(
            status=TaskResultStatus.RUNNING, started_at=now, worker_ids=[self.worker_id]
        )
        for row in batch:
            row.status, row.started_at, row.worker_ids = (
                TaskResultStatus.RUNNING,
                now,
                [self.worker_id],
            )
        return batch

    def run_delivery_tasks(self, batch: list[DBTaskResult]) -> None:
        """Run a batch of delivery tasks as one: their deliveries are claimed, sent and
        recorded together (services.deliver_many); each task's result is the status of its
        delivery, written with one UPDATE per distinct result."""
        self.running_task = True
        try:
            ids = []
            for row in batch:
                (delivery_id,) = row.args_kwargs["args"]
                ids.append(delivery_id)
            try:
                statuses = services.deliver_many(list(dict.fromkeys(ids)))
            except BaseException as exc:  # as db_worker: a failed task is recorded, not raised
                logger.exception("delivery tasks %s failed", [str(row.pk) for row in batch])
                for row in batch:
                    self.record(row, lambda row=row, error=exc: row.set_failed(error))
                if not isinstance(exc, Exception):
                    raise
                return
            results: dict[str, list] = {}
            for row, delivery_id in zip(batch, ids, strict=True):
                # A delivery named by two tasks is sent once: the first task reports it.
                status = statuses.pop(delivery_id, sending.NOT_CLAIMED)
                results.setdefault(str(status), []).append(row.pk)
            self.record(batch[0], lambda: self.finish_delivery_tasks(results))
        finally:
            self.running_task = False
            self._run_tasks += len(batch)

    @staticmethod
    def finish_delivery_tasks(results: dict[str, list]) -> None:
        now = timezone.now()
        with transaction.atomic():
            for value, pks in results.items():
                DBTaskResult.objects.filter(pk__in=pks).update(
                    status=TaskResultStatus.SUCCESSFUL,
                    finished_at=now,
                    return_value=value,
                    exception_class_path="",
                    traceback="",
                )

    def record(self, db_task_result: DBTaskResult, write) -> None:
        retry_database(
            f"task {db_task_result.id}: recording its result",
            write,
            seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS,
        )

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < self.beat_every:
            return
        liveness.record_worker_heartbeat(
            self.worker_id, hostname=self.hostname, pid=self.pid, started_at=self.started_at
        )
        self._last_beat = now

    def goodbye(self) -> None:
        """A clean stop takes the heartbeat away (best effort: the database may be gone)."""
        try:
            liveness.forget_worker(self.worker_id)
        except DATABASE_ERRORS:
            logger.warning("worker %s: could not remove its heartbeat", self.worker_id)
