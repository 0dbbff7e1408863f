"""The portal as a real server process on loopback, for clients that must talk to a deployed
portal (certbot): its own SQLite file, CA key directory and settings from the environment,
served by gunicorn on a free port; administered with `manage.py` in further processes.

    with PortalProcess(tmp_path, ACME_HTTP01_PORT="5002") as portal:
        portal.manage("create_acme_binding", "--email", ..., "--json")
        portal.query("SELECT status FROM requests_app_certificate")

Nothing of the test's own database is shared: the portal's rows are read back through its
commands or, read-only, from its SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"


class PortalProcess:
    """gunicorn serving ca_portal on 127.0.0.1 with a fresh database and CA."""

    def __init__(self, tmp: Path, *, workers: int = 2, **settings: str):
        self.port = free_port()
        self.root = Path(tmp) / f"portal-{self.port}"
        self.db = self.root / "db.sqlite3"
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {
            "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
            "ENV_FILE": "/nonexistent/.env",
            "DATABASE_URL": f"sqlite:///{self.db}",
            "TASKS_BACKEND": "immediate",
            "EMAIL_URL": "dummy://",
            "CA_KEY_DIR": str(self.root / "ca-keys"),
            "CA_KEY_PASSPHRASE": "portal-process-passphrase-not-secret",
            "SECRET_KEY": "portal-process-" + "s" * 50,
            "DEBUG": "False",
            "SECURE_SSL_REDIRECT": "False",
            "SESSION_COOKIE_SECURE": "False",
            "CSRF_COOKIE_SECURE": "False",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SITE_URL": self.base,
            # The OCSP URL in issued certificates: this server (pkilint takes an IP).
            "REVOCATION_BASE_URL": self.base,
            **settings,
        }
        self._process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`manage.py ARGS` against this portal's database and keys."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {result.returncode}\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def query(self, sql: str, *params) -> list[tuple]:
        """Rows from the portal's database, opened read-only."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def start(self) -> PortalProcess:
        assert GUNICORN.exists(), "gunicorn is not installed (requirements.txt)"
        self.root.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--verbosity", "0")
        self.manage("init_ca", "--subject", "CN=ACME Test Root CA,O=ca-portal tests,C=US")
        self._process = subprocess.Popen(
            [
                str(GUNICORN),
                "ca_portal.wsgi",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--timeout",
                "120",
                "--access-logfile",
                "/dev/null",
                "--error-logfile",
                str(self.root / "gunicorn.log"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/acme/directory", timeout=2).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the portal did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        log = self.root / "gunicorn.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> PortalProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
