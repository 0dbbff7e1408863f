"""send_expiry_reminders run twice at the same moment sends nothing twice: two real
processes on one SQLite file database, and (on PostgreSQL) four threads at once."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers.expiry import REMINDER_SUBJECT, subject
from tests.helpers.servers import SMTPServer

ROOT = Path(__file__).resolve().parent.parent
COUNT = 40

#: Run in the portal's shell: a CA, an agent, COUNT server certificates of 100 days, each
#: with its own holder's address; prints the moment 6.5 days before they expire.
SETUP = f"""
import datetime as dt
from cryptography import x509
from requests_app import services
from tests.helpers.csrs import make_csr
agent = services.create_agent("agent1", email="agent1@example.test", password="agent-pass-123")
services.create_ca("CN=Expiry Race CA", key_type="p256")
for i in range({COUNT}):
    name = f"h{{i}}.example.test"
    req = services.submit_request(
        profile="server", csr=make_csr(cn=name, sans=[x509.DNSName(name)]),
        requester_email=f"holder{{i}}@example.test",
    )
    cert = services.approve_request(req, agent=agent, validity_days=100)
print((cert.not_after - dt.timedelta(days=6.5)).isoformat())
"""


def _env(tmp_path: Path, smtp: SMTPServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return env | {
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TASKS_BACKEND": "immediate",  # each process sends its own deliveries on commit
        "EMAIL_URL": smtp.email_url,
        "CA_KEY_DIR": str(tmp_path / "keys"),
        "CA_KEY_PASSPHRASE": "race-passphrase-not-secret",
        "SECRET_KEY": "race-" + "k" * 50,
        "DEBUG": "False",
        "DELIVERY_AUTOMATIC": "False",
        "DELIVERY_NOTIFICATIONS": "True",
        "AGENT_NOTIFY_EMAIL": "agents@example.test",
        "PYTHONPATH": str(ROOT),
    }


def _manage(env, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_at_once_send_each_reminder_and_the_digest_once(tmp_path):
    """Two send_expiry_reminders processes started together on one SQLite file database
    queue COUNT reminders between them, one per certificate, and one digest; a third run
    afterwards sends nothing."""
    smtp = SMTPServer().start()
    try:
        env = _env(tmp_path, smtp)
        _manage(env, "migrate", "--noinput", "-v", "0")
        when = _manage(env, "shell", "-c", SETUP).stdout.strip().splitlines()[-1]
        smtp.messages.clear()
        command = [sys.executable, "manage.py", "send_expiry_reminders", "--now", when]
        runs = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=180)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        again = _manage(env, "send_expiry_reminders", "--now", when).stdout
    finally:
        smtp.stop()
    reminders = [m for m in smtp.messages if subject(m).startswith(REMINDER_SUBJECT)]
    recipients = Counter(m["To"] for m in reminders)
    assert len(recipients) == COUNT, outputs
    assert set(recipients.values()) == {1}, [r for r, n in recipients.items() if n > 1]
    digests = [m for m in smtp.messages if subject(m).startswith("[ca-portal] ")]
    assert [m["To"] for m in digests] == ["agents@example.test"]
    # Between them the two runs queued every reminder (how they split it is up to timing).
    queued = sum(int(out.split(" reminder(s) queued")[0]) for out in outputs)
    assert queued == COUNT, outputs
    assert again.startswith("0 reminder(s) queued; 0 digest(s) sent"), again
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM delivery_expiryreminder").fetchone() == (COUNT,)
        sent = db.execute(
            "SELECT count(*) FROM delivery_delivery WHERE kind = 'expiry_reminder' "
            "AND status = 'sent'"
        ).fetchone()
        assert sent == (COUNT,)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks and concurrent unique inserts are PostgreSQL's; CI runs this there",
)
def test_four_threads_at_once_on_postgresql(ca, agent, smtp_server, settings):
    """Four runs at the same instant on PostgreSQL queue each reminder and the digest once."""
    from delivery import expiry as delivery_expiry
    from tests.helpers.concurrency import race
    from tests.helpers.expiry import issue

    settings.DELIVERY_AUTOMATIC = False
    settings.AGENT_NOTIFY_EMAIL = ["agents@example.test"]
    certs = [
        issue(agent, cn=f"t{i}.example.test", email=f"t{i}@example.test", validity_days=100)
        for i in range(12)
    ]
    smtp_server.messages.clear()
    when = certs[-1].not_after - dt.timedelta(days=6.5)
    results, errors = race(lambda: delivery_expiry.send_expiry_reminders(now=when), 4)
    assert errors == []
    assert sum(r.reminders_queued for r in results) == len(certs)
    assert sum(r.digests_sent for r in results) == 1
    reminders = Counter(
        m["To"] for m in smtp_server.messages if subject(m).startswith(REMINDER_SUBJECT)
    )
    assert sorted(reminders) == sorted(c.issued_request.requester_email for c in certs)
    assert set(reminders.values()) == {1}
