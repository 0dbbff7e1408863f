"""`make run` end to end: it serves, and Ctrl-C (SIGINT to its process group, as a terminal
sends it) stops the server, the worker and the periodic loop, quietly."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group(pgid: int) -> list[str]:
    """The command lines of the processes still in process group pgid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def _wait_for(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def test_ctrl_c_stops_make_run_quietly_and_leaves_nothing_running(tmp_path):
    """After SIGINT to make's process group, make ends without an error or a crash message
    and no runserver, worker or periodic loop is left."""
    port = _free_port()
    env = {
        # Not the test run's environment (its settings are for tests): a fresh shell's.
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "CA_KEY_DIR": str(tmp_path / "ca"),
        "SECRET_KEY": "make-run-test-secret",
        "CA_KEY_PASSPHRASE": "make-run-test-passphrase",
        "DEBUG": "True",
        "AGENT_REQUIRE_MFA": "False",
        "EMAIL_URL": "console://",
        "ADDR": f"127.0.0.1:{port}",
    }
    # The venv exists already: -o keeps make from reinstalling it or writing a .env.
    command = ["make", "-o", f"{VENV}/.run-stamp", "-o", ".env", "run", f"VENV={VENV}"]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/", proc, seconds=120)
        time.sleep(3)  # a worker that failed to start would be restarting by now
        running = " | ".join(_group(proc.pid))
        assert "runserver" in running
        assert "run_worker" in running
        assert "sleep 60" in running  # the periodic loop
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # make re-raises the SIGINT on itself, as it should (a shell prints nothing for that).
    assert proc.returncode in (0, -signal.SIGINT), output
    assert "Segmentation fault" not in output
    assert "Error" not in output
    assert "***" not in output
    assert "restarting it" not in output  # the worker was stopped, not restarted
    deadline = time.monotonic() + 10
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(proc.pid) == []
