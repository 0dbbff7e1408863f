"""The worker stays up and honest, as real processes: killed with -9 in the middle of a send
(its task is recovered and the message goes out again under the same Message-ID), a
PostgreSQL connection dropped under it, and a SQLite database locked by another process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db import DatabaseBackend
from django_tasks_db.models import DBTaskResult

from delivery.models import Delivery
from delivery.tasks import deliver_task
from requests_app import services
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.servers import DB_WORKER, HoldingSMTPServer, portal_env

ROOT = Path(__file__).resolve().parent.parent
Status = Delivery.Status

postgres_only = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="a worker process needs a shared server database; CI runs this on PostgreSQL",
    ),
]


def _queue(request, recipient: str) -> Delivery:
    """A due notification in the outbox, with its task waiting in the database queue."""
    delivery = Delivery.objects.create(
        request=request,
        backend="notify",
        kind=Delivery.Kind.REQUEST_RECEIVED,
        recipient=recipient,
        next_attempt_at=timezone.now(),
    )
    DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}}).enqueue(
        deliver_task, (delivery.pk,), {}
    )
    return delivery


def _start(env) -> subprocess.Popen:
    return subprocess.Popen(
        DB_WORKER, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _stop(*workers: subprocess.Popen) -> list[str]:
    outputs = []
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        outputs.append(worker.communicate(timeout=60)[0].decode(errors="replace"))
    return outputs


def _wait_until(condition, *, seconds: float = 60, every: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or condition}")
        time.sleep(every)


@pytest.fixture
def request_row(ca, settings):
    settings.DELIVERY_NOTIFICATIONS = False
    return services.submit_request(
        profile="server", csr=make_csr(cn="worker.example.test"), requester_email="o@example.test"
    )


class TestOnPostgreSQL:
    pytestmark = postgres_only

    def test_kill_9_during_a_send_is_recovered_with_the_same_message_id(
        self, request_row, settings
    ):
        """A worker killed after the server took the message but before it recorded that: the
        sweeper recovers its RUNNING task, the lease expires, a second worker sends again, and
        both copies carry one Message-ID."""
        delivery = _queue(request_row, "holder@example.test")
        smtp = HoldingSMTPServer().start()
        env = portal_env(
            settings,
            EMAIL_URL=smtp.email_url,
            DELIVERY_LEASE_SECONDS="2",
            WORKER_HEARTBEAT_MAX_AGE_SECONDS="2",
        )
        first = _start(env)
        second = None
        try:
            assert smtp.arrived.wait(60), "the first worker never sent"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            smtp.release.set()
            delivery.refresh_from_db()
            assert delivery.status == Status.SENDING
            assert DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).count() == 1

            second = _start(env)

            def swept_and_resent():
                # retry_deliveries as cron runs it: recovers the task, re-enqueues the delivery
                subprocess.run(
                    [sys.executable, "manage.py", "retry_deliveries"],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                return len(smtp.messages) >= 2

            _wait_until(swept_and_resent, seconds=90, every=0.5, what="the second send")
            _wait_until(
                lambda: Delivery.objects.get(pk=delivery.pk).status == Status.SENT,
                what="the delivery recorded sent",
            )
            time.sleep(1)  # a third copy would arrive now
        finally:
            smtp.release.set()
            outputs = _stop(*(w for w in (first, second) if w is not None))
            smtp.stop()

        assert len(smtp.messages) == 2, outputs
        message_ids = {m["Message-ID"] for m in smtp.messages}
        assert len(message_ids) == 1
        assert delivery.public_id.lower() in message_ids.pop()
        delivery.refresh_from_db()
        assert delivery.attempts == 2
        tasks = DBTaskResult.objects.all()
        assert not tasks.filter(status=TaskResultStatus.RUNNING).exists()
        lost = tasks.get(status=TaskResultStatus.FAILED)
        assert lost.exception_class_path == "delivery.liveness.WorkerLost"
        assert AuditEvent.objects.filter(action="tasks_recovered").count() == 1

    def test_a_dropped_connection_during_a_send_is_survived(self, request_row, settings):
        """The worker's connection is terminated while the server holds the message: the worker
        reconnects, records it sent (no second copy), stays up and sends the next one."""
        delivery = _queue(request_row, "first@example.test")
        smtp = HoldingSMTPServer().start()
        env = portal_env(settings, EMAIL_URL=smtp.email_url)
        worker = _start(env)
        try:
            assert smtp.arrived.wait(60), "the worker never sent"
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                assert cursor.fetchall(), "the worker had no connection to terminate"
            smtp.release.set()
            _wait_until(
                lambda: Delivery.objects.get(pk=delivery.pk).status == Status.SENT,
                what="the delivery recorded sent",
            )
            assert worker.poll() is None, "the worker exited"
            later = _queue(request_row, "second@example.test")
            _wait_until(
                lambda: Delivery.objects.get(pk=later.pk).status == Status.SENT,
                what="the next delivery",
            )
            assert worker.poll() is None, "the worker exited"
        finally:
            smtp.release.set()
            outputs = _stop(worker)
            smtp.stop()
        assert [m["To"] for m in smtp.messages] == [
            "first@example.test",
            "second@example.test",
        ], outputs
        assert set(DBTaskResult.objects.values_list("status", flat=True)) == {
            TaskResultStatus.SUCCESSFUL
        }


def _sqlite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.pop("DATABASE_URL", None)
    # A cache of its own: the suite's shared one (CACHE_URL, in CI's PostgreSQL pass) holds
    # the whole run's per-address mail counts, which production's daily limit here refuses.
    env.pop("CACHE_URL", None)
    return env | {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        # Lock waits of one second, so that the test's lock outlasts several of them.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}?timeout=1",
        "TASKS_BACKEND": "database",
        "CA_KEY_DIR": str(tmp_path / "ca"),
        "CA_KEY_PASSPHRASE": "sqlite-lock-test-passphrase",
        "STATIC_ROOT": str(tmp_path / "static"),
        **extra,
    }


SETUP = """
from requests_app import services
from tests.helpers.csrs import make_csr
services.create_ca("CN=Lock Test CA,O=ca-portal tests,C=US", key_type="p256")
services.submit_request(
    profile="server", csr=make_csr(cn="lock.example.test"), requester_email="o@example.test"
)
"""


def test_a_locked_sqlite_database_is_survived(tmp_path):
    """Another process holds SQLite's write lock for seconds (several lock timeouts) while the
    worker must record a send: it backs off and records it once the lock goes, and stays up."""
    smtp = HoldingSMTPServer().start()
    env = _sqlite_env(tmp_path, EMAIL_URL=smtp.email_url)
    database = tmp_path / "db.sqlite3"
    try:
        for command in (["migrate", "--noinput", "-v", "0"], ["shell", "-c", SETUP]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                timeout=180,
            )
        worker = _start(env)
        try:
            assert smtp.arrived.wait(60), "the worker never sent"
            holder = sqlite3.connect(database, isolation_level=None, timeout=30)
            holder.execute("BEGIN IMMEDIATE")  # the write lock, as a busy web process has it
            smtp.release.set()
            time.sleep(4)  # the worker's writes time out (1 s each) meanwhile
            assert worker.poll() is None, "the worker exited while the database was locked"
            holder.execute("ROLLBACK")
            holder.close()

            def status():
                with sqlite3.connect(database, timeout=30) as reader:
                    return reader.execute("SELECT status FROM delivery_delivery").fetchall()

            _wait_until(lambda: status() == [("sent",)], what="the delivery recorded sent")
            assert worker.poll() is None, "the worker exited"
        finally:
            smtp.release.set()
            outputs = _stop(worker)
    finally:
        smtp.stop()
    assert len(smtp.messages) == 1, outputs
    assert "the database failed" in outputs[0] or "trying again" in outputs[0], outputs
    with sqlite3.connect(database) as reader:
        tasks = reader.execute("SELECT status FROM django_tasks_database_dbtaskresult").fetchall()
    assert tasks == [("SUCCESSFUL",)]
