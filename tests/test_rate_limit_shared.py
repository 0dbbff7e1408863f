"""The enrollment limits count in the database: every process shares one budget whatever
the cache, the window really ends, and the refusal says when to try again (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import time_machine

from requests_app import throttle
from requests_app.models import RateCount
from tests.helpers.csrs import make_csr

ROOT = Path(__file__).resolve().parent.parent
IP = "198.51.100.7"
COUNT = (
    "from requests_app import throttle; "
    "print(' '.join(str(throttle.enrollment_allowed('198.51.100.7')) for _ in range(2)))"
)


def test_two_processes_share_one_budget_with_the_default_cache(tmp_path):
    """Two portal processes with the default per-process cache: 2 + 2 tries against 3/3600
    are 3 allowed and 1 refused, not 4 allowed."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
        "ENV_FILE": "/nonexistent/.env",
        "DEBUG": "True",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "CA_KEY_DIR": str(tmp_path / "ca"),
        "ENROLL_RATE_LIMIT": "3/3600",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    outputs = [
        subprocess.run(
            [*manage, "shell", "--no-imports", "-c", COUNT],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for _ in range(2)
    ]
    assert outputs == [["True", "True"], ["True", "False"]]


def test_the_window_ends_and_counting_starts_again(settings, db):
    """Refused until the window's end, allowed again after it; old windows are deleted."""
    settings.ENROLL_RATE_LIMIT = "2/3600"
    with time_machine.travel(datetime(2026, 12, 1, 9, 10, tzinfo=UTC), tick=False) as traveller:
        assert [throttle.enrollment_allowed(IP) for _ in range(3)] == [True, True, False]
        assert throttle.window_ends("2/3600") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        traveller.move_to(datetime(2026, 12, 1, 9, 59, 59, tzinfo=UTC))
        assert not throttle.enrollment_allowed(IP)
        traveller.move_to(datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC))
        assert throttle.enrollment_allowed(IP)
        assert throttle.enrollment_allowed("203.0.113.9")
        assert RateCount.objects.filter(expires_at__lte=datetime.now(UTC)).count() == 0


def test_the_refusal_says_when_to_try_again(client, ca, settings):
    """The 429 page names the time the window ends, in UTC, and how long that is."""
    settings.ENROLL_RATE_LIMIT = "1/3600"
    data = {"csr": make_csr(cn="a.example.test"), "requester_email": "f@example.test"}
    with time_machine.travel(datetime(2026, 12, 1, 9, 10, tzinfo=UTC), tick=False):
        assert client.post("/enroll/server/", data, REMOTE_ADDR=IP).status_code == 302
        response = client.post(
            "/enroll/server/", {**data, "csr": make_csr(cn="b.example.test")}, REMOTE_ADDR=IP
        )
    assert response.status_code == 429
    assert "Try again after 2026-12-01 10:00 UTC (in 50 minutes)." in response.content.decode()


def test_the_server_key_form_says_when_to_try_again(client, ca, settings):
    """The keyless enrollment form's refusal names the time too."""
    settings.SERVER_KEY_ENROLL_RATE_LIMIT = 0
    with time_machine.travel(datetime(2026, 12, 1, 9, 59, 30, tzinfo=UTC), tick=False):
        response = client.post(
            "/enroll/user/server-key/",
            {
                "requester_email": "ada@example.test",
                "requester_name": "Ada",
                "passphrase": "violet staircase under the moon",
                "passphrase_confirm": "violet staircase under the moon",
            },
            REMOTE_ADDR=IP,
        )
    assert response.status_code == 429
    assert "Try again after 2026-12-01 10:00 UTC (in 1 minute)." in response.content.decode()
