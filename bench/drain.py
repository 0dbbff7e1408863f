"""Delivery drain: queued link mails sent by `manage.py run_worker` processes to an SMTP
server (aiosmtpd) in a process of its own, against a raw smtplib loop, also in a process of
its own, sending the same messages built beforehand: once over one kept connection (what the
worker does) and once with a new connection per message.

Sides run through bench.common.interleaved (shuffled rounds); each round queues fresh
deliveries and their tasks outside the timed part (the tasks become ready at a moment the
clock starts from), and every drain round checks that each row was sent exactly once.
`python -m bench.drain` runs SQLite and (when reachable) PostgreSQL, each in its own process
(`--db`), and prints one JSON line `{"bench": "drain", "rows": [...]}`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ROOT,
    fresh_database,
    interleaved,
    postgres_available,
    ratios,
    shown,
    spread,
)

GOALS = {"kept": 0.3, "new": 0.5, "scale": 1.6}


# --- the SMTP server and the raw loop, each in a process of its own -------------------------


def sink(port: int) -> None:
    """An aiosmtpd server that accepts and counts; `count` on stdin prints the count."""
    import logging

    from aiosmtpd.controller import Controller

    class Counter:
        received = 0

        async def handle_DATA(self, server, session, envelope):
            self.received += len(envelope.rcpt_tos)
            return "250 Message accepted for delivery"

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = Counter()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(handler.received, flush=True)
    controller.stop()


def raw(port: int, mode: str, messages_file: str) -> None:
    """Send the prepared messages, timing the loop only; prints {seconds, items}."""
    with open(messages_file, "rb") as file:
        messages = pickle.load(file)  # noqa: S301 - written by this benchmark a moment ago
    start = time.perf_counter()
    if mode == "kept":
        with smtplib.SMTP("127.0.0.1", port) as conn:
            for sender, recipient, data in messages:
                conn.sendmail(sender, [recipient], data)
    else:
        for sender, recipient, data in messages:
            with smtplib.SMTP("127.0.0.1", port) as conn:
                conn.sendmail(sender, [recipient], data)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "items": len(messages)}), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- one database: every side, interleaved --------------------------------------------------


class Drain:
    """The portal side: a CA, a certificate, and pools of run_worker processes (one queue
    each) waiting for work."""

    def __init__(self, db: str, n: int, port: int):
        from bench.common import setup_django

        self.db, self.n, self.port = db, n, port
        # BENCH_DATABASE_SUFFIX keeps two people's runs on one PostgreSQL server apart.
        self.database_url = fresh_database(
            db, "drain" + os.environ.get("BENCH_DATABASE_SUFFIX", "")
        )
        setup_django(self.database_url)
        from requests_app import services
        from tests.helpers.csrs import make_csr

        services.create_ca("CN=Bench Drain CA", key_type="p256")
        self.cert = services.issue_certificate(
            profile="server", csr=make_csr(cn="drain.bench.test"), requester_email="d@bench.test"
        )
        self.pools: dict[str, list[subprocess.Popen]] = {}
        self.sent = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TASKS_BACKEND": "database",
            "EMAIL_URL": f"smtp://127.0.0.1:{self.port}?timeout=10",
            "DATABASE_URL": self.database_url,
        }

    def start_pool(self, queue: str, workers: int) -> None:
        command = [
            sys.executable,
            "manage.py",
            "run_worker",
            "--queue-name",
            queue,
            "--no-startup-delay",
            "--no-reload",
            "--interval",
            "0.02",
            "-v",
            "0",
        ]
        self.pools[queue] = [
            subprocess.Popen(command, cwd=ROOT, env=self.env()) for _ in range(workers)
        ]

    def stop_pools(self) -> None:
        for processes in self.pools.values():
            for process in processes:
                process.send_signal(signal.SIGTERM)
        for processes in self.pools.values():
            for process in processes:
                process.wait(timeout=60)

    def queue(self, queue_name: str | None, *, start_at=None) -> list:
        """N fresh deliveries (and, for a worker queue, their tasks, ready at start_at)."""
        from django_tasks_db.models import DBTaskResult

        from delivery.models import Delivery

        cert = self.cert
        first = self.sent
        self.sent += self.n
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                request=cert.request,
                certificate=cert,
                backend="email_link",
                kind="link",
                recipient=f"r{first + i}@bench.test",
                next_attempt_at=start_at,
            )
            for i in range(self.n)
        )
        if queue_name is not None:
            DBTaskResult.objects.bulk_create(
                DBTaskResult(
                    args_kwargs={"args": [d.pk], "kwargs": {}},
                    task_path="delivery.tasks.deliver_task",
                    queue_name=queue_name,
                    backend_name="default",
                    run_after=start_at,
                )
                for d in deliveries
            )
        return deliveries

    def messages_file(self) -> str:
        """The raw side's messages: fresh deliveries' mail built as the worker builds it."""
        import email.policy

        from django.conf import settings
        from django.utils import timezone

        from delivery.backends import get_backend
        from delivery.models import Delivery

        backend = get_backend("email_link")
        deliveries = self.queue(None, start_at=timezone.now())
        messages = []
        for d in deliveries:
            message = backend.build_message(d)
            data = message.message(policy=email.policy.SMTP).as_bytes()
            messages.append((settings.DEFAULT_FROM_EMAIL, d.recipient, data))
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).delete()
        path = Path(tempfile.mkdtemp(prefix="bench-drain-")) / "messages.pickle"
        path.write_bytes(pickle.dumps(messages))
        return str(path)

    def drain_side(self, queue_name: str):
        def side() -> tuple[float, int]:
            import datetime as dt

            from django.utils import timezone

            from delivery.models import Delivery

            start_at = timezone.now() + dt.timedelta(seconds=0.5)
            deliveries = self.queue(queue_name, start_at=start_at)
            ids = [d.pk for d in deliveries]
            rows = Delivery.objects.filter(pk__gte=min(ids), pk__lte=max(ids))
            time.sleep(max(0.0, (start_at - timezone.now()).total_seconds()))
            start = time.perf_counter()
            while rows.filter(status="sent").count() < self.n:
                if time.perf_counter() - start > 600:
                    raise RuntimeError(f"{queue_name}: the workers did not drain the queue")
                time.sleep(0.005)
            seconds = time.perf_counter() - start
            assert set(rows.values_list("attempts", flat=True)) == {1}, "a row was sent twice"
            return seconds, self.n

        return side


def raw_side(port: int, mode: str, messages_file: str):
    def side() -> tuple[float, int]:
        out = subprocess.run(
            [sys.executable, "-m", "bench.drain", "raw", str(port), mode, messages_file],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        return result["seconds"], result["items"]

    return side


def one_database(db: str, n: int, rounds: int) -> list[dict]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.drain", "sink", str(port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "ready"
    drain = Drain(db, n, port)
    try:
        messages = drain.messages_file()
        sides = {
            "raw, kept connection": raw_side(port, "kept", messages),
            "raw, new connection per message": raw_side(port, "new", messages),
            "1 worker": drain.drain_side("drain1"),
        }
        drain.start_pool("drain1", 1)
        if db == "postgres":
            sides["2 workers"] = drain.drain_side("drain2")
            drain.start_pool("drain2", 2)
        time.sleep(3)  # the workers start up (Django, a connection) before the first round
        rates = interleaved(sides, rounds)
        server.stdin.write("count\n")
        server.stdin.flush()
        received = int(server.stdout.readline())
        expected = rounds * n * len(sides)
        assert received == expected, f"the SMTP server got {received} messages, not {expected}"
    finally:
        drain.stop_pools()
        server.stdin.close()
        server.wait(timeout=30)
    rows = [
        _row(
            db,
            "1 worker ÷ raw, kept connection",
            rates,
            "1 worker",
            "raw, kept connection",
            GOALS["kept"],
        ),
        _row(
            db,
            "1 worker ÷ raw, new connection per message",
            rates,
            "1 worker",
            "raw, new connection per message",
            GOALS["new"],
        ),
    ]
    if "2 workers" in rates:
        rows.append(
            _row(db, "2 workers ÷ 1 worker", rates, "2 workers", "1 worker", GOALS["scale"])
        )
    return rows


def _row(db, label, rates, numerator, denominator, goal) -> dict:
    """One row of the table: the same keys in every row (bench.run prints them as columns)."""
    ratio = spread(ratios(rates, numerator, denominator))
    met = ratio["median"] >= goal
    return {
        "db": db,
        "figure": label,
        "ratio": shown(ratio),
        "goal": f"≥ {goal}: {'met' if met else 'MISSED'}",
        "numerator": f"{numerator} {shown(spread(rates[numerator]), 0)}/s",
        "denominator": f"{denominator} {shown(spread(rates[denominator]), 0)}/s",
        "rounds": str(ratio["rounds"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000, help="messages per side and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", choices=["sqlite", "postgres"])
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "sink":
        return sink(int(rest[1]))
    if rest and rest[0] == "raw":
        return raw(int(rest[1]), rest[2], rest[3])
    if args.db:
        rows = one_database(args.db, args.n, args.rounds)
        print(json.dumps({"bench": "drain", "db": args.db, "rows": rows}, ensure_ascii=False))
        return
    rows = []
    for db in ["sqlite"] + (["postgres"] if postgres_available() else []):
        command = [sys.executable, "-m", "bench.drain", "--db", db, "-n", str(args.n)]
        command += ["--rounds", str(args.rounds)]
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            error = (out.stderr or out.stdout).strip().splitlines()[-1:]
            rows.append({"db": db, "figure": "error", "ratio": " ".join(error)})
            continue
        rows += json.loads(lines[-1])["rows"]
    print(json.dumps({"bench": "drain", "rows": rows}, ensure_ascii=False))


if __name__ == "__main__":
    main()
