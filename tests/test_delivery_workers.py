"""Two db_worker processes on PostgreSQL drain one outbox: every message arrives exactly once."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_tasks_db import DatabaseBackend

from delivery import services as delivery_services
from delivery.models import Delivery
from delivery.tasks import deliver_task
from requests_app import services
from tests.helpers.csrs import make_csr
from tests.helpers.servers import DB_WORKER, SMTPServer, portal_env

ROOT = Path(__file__).resolve().parent.parent
COUNT = 500

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="several workers need a shared server database; CI runs this on PostgreSQL",
    ),
]


def test_two_workers_deliver_each_message_exactly_once(ca, settings):
    """500 queued deliveries, two db_workers, one SMTP server: 500 messages, no duplicate."""
    settings.DELIVERY_NOTIFICATIONS = False
    req = services.submit_request(
        profile="server", csr=make_csr(cn="bulk.example.test"), requester_email="o@example.test"
    )
    now = timezone.now()
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            request=req,
            backend="notify",
            kind=Delivery.Kind.REQUEST_RECEIVED,
            recipient=f"r{i}@example.test",
            next_attempt_at=now,
        )
        for i in range(COUNT)
    )
    database = DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}})
    for delivery in deliveries:
        database.enqueue(deliver_task, (delivery.pk,), {})
    # Enqueue a second time: a duplicated task must still send once (compare-and-swap claim).
    for delivery in deliveries[:50]:
        database.enqueue(deliver_task, (delivery.pk,), {})

    smtp = SMTPServer().start()
    env = portal_env(settings, EMAIL_URL=smtp.email_url)
    command = [*DB_WORKER, "--batch"]
    try:
        workers = [
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            for _ in range(2)
        ]
        outputs = [worker.communicate(timeout=600)[0].decode() for worker in workers]
    finally:
        smtp.stop()
    assert [w.returncode for w in workers] == [0, 0], outputs
    received = Counter(m["To"] for m in smtp.messages)
    assert len(received) == COUNT
    assert set(received.values()) == {1}
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
    from django_tasks_db.models import DBTaskResult

    results = DBTaskResult.objects.all()
    assert Counter(results.values_list("return_value", flat=True)) == {
        "sent": COUNT,
        "not-claimed": 50,
    }
    workers_seen = {
        worker_id for ids in results.values_list("worker_ids", flat=True) for worker_id in ids
    }
    assert len(workers_seen) == 2  # both processes took part
    # The tasks ran in batches: far fewer claims of task rows than tasks.
    assert len(set(results.values_list("started_at", flat=True))) < COUNT / 5


def test_a_worker_killed_mid_batch_leaves_leases_the_sweeper_returns(ca, settings):
    """A run_worker process is killed (SIGKILL) while its batch's first message waits for the
    server's answer: the batch's rows stay leased, and once the lease expires the sweeper
    sends each; only the message in flight arrives twice, with one Message-ID."""
    import io
    import signal
    import time

    from django.core.management import call_command

    from ca_portal.settings import build_mailers
    from tests.helpers.servers import HoldingSMTPServer

    settings.DELIVERY_NOTIFICATIONS = False
    req = services.submit_request(
        profile="server", csr=make_csr(cn="crash.example.test"), requester_email="o@example.test"
    )
    now = timezone.now()
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            request=req,
            backend="notify",
            kind=Delivery.Kind.REQUEST_RECEIVED,
            recipient=f"c{i}@example.test",
            next_attempt_at=now,
        )
        for i in range(10)
    )
    database = DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}})
    for delivery in deliveries:
        database.enqueue(deliver_task, (delivery.pk,), {})
    smtp = HoldingSMTPServer().start()
    env = portal_env(settings, EMAIL_URL=smtp.email_url, DELIVERY_LEASE_SECONDS="3")
    worker = subprocess.Popen(
        DB_WORKER, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        if not smtp.arrived.wait(timeout=60):
            worker.kill()
            raise AssertionError(f"the worker sent nothing: {worker.communicate()[0].decode()}")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        rows = Delivery.objects.filter(pk__in=[d.pk for d in deliveries])
        assert set(rows.values_list("status", "attempts")) == {(Delivery.Status.SENDING, 1)}
        assert delivery_services.due_delivery_ids() == []  # the lease holds
        smtp.release.set()
        time.sleep(3.2)
        settings.MAILERS = build_mailers(smtp.email_url, "")
        out = io.StringIO()
        call_command("retry_deliveries", "--sync", stdout=out)
    finally:
        smtp.release.set()
        smtp.stop()
        if worker.poll() is None:
            worker.kill()
    assert "10 sent" in out.getvalue()
    assert set(rows.values_list("status", "attempts")) == {(Delivery.Status.SENT, 2)}
    received = Counter(m["To"] for m in smtp.messages)
    assert set(received) == {d.recipient for d in deliveries}
    twice = [to for to, count in received.items() if count == 2]
    assert len(twice) == 1 and sum(received.values()) == 11
    # The same Message-ID (its host is SITE_URL's, which the worker process has its own of).
    ids = {m["Message-ID"].partition("@")[0] for m in smtp.messages if m["To"] == twice[0]}
    assert len(ids) == 1
