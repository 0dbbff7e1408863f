"""An erased server-made key leaves no copy in the SQLite file or its write-ahead log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_erased_key_is_gone_from_the_sqlite_file_and_its_wal(tmp_path):
    """After the one download, no line of the sealed key is in db.sqlite3 or db.sqlite3-wal."""
    database = tmp_path / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "ENV_FILE": str(tmp_path / "absent.env"),
        "CA_KEY_DIR": str(tmp_path / "keys"),
        "DJANGO_SETTINGS_MODULE": "ca_portal.settings_test",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.helpers.erase_script"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["checked"] >= 5
    assert report["found"] == 0, report
