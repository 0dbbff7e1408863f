"""Delivery drain: N queued link mails sent to a local SMTP server (aiosmtpd) by one and by
two db_worker processes, against a raw smtplib loop sending the same messages.

Needs PostgreSQL (several workers share the queue). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import time

from bench.common import ROOT, fresh_database, setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    database_url = fresh_database("postgres", "drain")
    setup_django(database_url)

    from django.utils import timezone
    from django_tasks_db import DatabaseBackend

    from delivery.backends import get_backend
    from delivery.models import Delivery
    from delivery.tasks import deliver_task
    from requests_app import services
    from tests.helpers.csrs import make_csr
    from tests.helpers.servers import SMTPServer

    services.create_ca("CN=Bench Drain CA", key_type="p256")
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="drain.bench.test"), requester_email="d@bench.test"
    )
    req = cert.request

    def queue_all():
        Delivery.objects.all().delete()
        now = timezone.now()
        return Delivery.objects.bulk_create(
            Delivery(
                request=req,
                certificate=cert,
                backend="email_link",
                kind="link",
                recipient=f"r{i}@bench.test",
                next_attempt_at=now,
            )
            for i in range(args.n)
        )

    smtp = SMTPServer().start()
    backend = get_backend("email_link")

    # Raw: the same messages, built beforehand, one SMTP connection per message (as each
    # delivery is its own message to its own recipient), and over one kept-open connection.
    deliveries = queue_all()
    messages = [
        (d.recipient, backend.build_message(d).message(policy=email.policy.SMTP).as_bytes())
        for d in deliveries
    ]
    start = time.perf_counter()
    for recipient, data in messages:
        with smtplib.SMTP("127.0.0.1", smtp.port) as conn:
            conn.sendmail("ca-portal@localhost", [recipient], data)
    raw_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", smtp.port) as conn:
        for recipient, data in messages:
            conn.sendmail("ca-portal@localhost", [recipient], data)
    raw_kept_seconds = time.perf_counter() - start
    assert len(smtp.messages) == 2 * args.n

    env = {
        **os.environ,
        "TASKS_BACKEND": "database",
        "EMAIL_URL": smtp.email_url,
        "DATABASE_URL": database_url,
    }
    database = DatabaseBackend("default", {"QUEUES": [], "OPTIONS": {}})
    worker_seconds = {}
    # (workers, DATABASE_URL of the workers): durable commits, and asynchronous commits
    # (synchronous_commit=off: a crash may forget the last few hundred ms of "sent" marks,
    # so those mails may go out twice; the outbox is at-least-once across crashes anyway).
    async_url = database_url + "?options=-c%20synchronous_commit%3Doff"
    for workers, url in ((1, database_url), (2, database_url), ("1 async", async_url)):
        env["DATABASE_URL"] = url
        smtp.messages.clear()
        for delivery in queue_all():
            database.enqueue(deliver_task, (delivery.pk,), {})
        command = [
            sys.executable,
            "manage.py",
            "db_worker",
            "--batch",
            "--no-startup-delay",
            "--no-reload",
            "--interval",
            "0.05",
            "-v",
            "0",
        ]
        start = time.perf_counter()
        count = workers if isinstance(workers, int) else 1
        processes = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(count)]
        for process in processes:
            assert process.wait(timeout=3600) == 0
        worker_seconds[workers] = time.perf_counter() - start
        assert len(smtp.messages) == args.n, len(smtp.messages)
        assert Delivery.objects.filter(status="sent").count() == args.n
    smtp.stop()
    print(
        json.dumps(
            {
                "bench": "drain",
                "db": "postgres",
                "n": args.n,
                "raw_per_s": args.n / raw_seconds,
                "raw_kept_per_s": args.n / raw_kept_seconds,
                "one_worker_per_s": args.n / worker_seconds[1],
                "two_workers_per_s": args.n / worker_seconds[2],
                "one_worker_async_per_s": args.n / worker_seconds["1 async"],
                "one_worker_ratio": raw_seconds / worker_seconds[1],
                "two_workers_ratio": raw_seconds / worker_seconds[2],
                "one_worker_async_ratio": raw_seconds / worker_seconds["1 async"],
            }
        )
    )


if __name__ == "__main__":
    main()
