"""Shared set-up for the benchmarks: a throw-away database, a CA, CSRs, timing helpers.

Every figure is a ratio of two things measured side by side in the same run, with the
absolute numbers beside it: the machines are shared and noisy, so absolute times drift.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    python = platform.python_version()
    return f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()}, Python {python})"


def fresh_database(kind: str, name: str) -> str:
    """A DATABASE_URL for an empty database: a new SQLite file, or a re-created PG database."""
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        return f"sqlite:///{directory / 'db.sqlite3'}"
    import psycopg

    with psycopg.connect(
        PG_ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "bench_{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "bench_{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/bench_{name}"


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect(
            PG_ADMIN_URL.replace("postgres://", "postgresql://"), connect_timeout=3
        ).close()
        return True
    except Exception:
        return False


def setup_django(database_url: str, **extra_env: str) -> None:
    """Configure and start Django in this process against database_url, and migrate it."""
    key_dir = tempfile.mkdtemp(prefix="bench-keys-")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "ca_portal.settings",
            "ENV_FILE": "/nonexistent/.env",
            "DATABASE_URL": database_url,
            "TASKS_BACKEND": "immediate",
            "EMAIL_URL": "dummy://",
            "CA_KEY_DIR": key_dir,
            "CA_KEY_PASSPHRASE": "bench-passphrase-not-secret",
            "DELIVERY_NOTIFICATIONS": "False",
            # The "certificate ready" mail is a delivery of its own (drain measures those):
            # an approval here is the approval alone, as django-ca's issuance is.
            "DELIVERY_READY_MAIL": "False",
            "DEBUG": "False",
            "SECURE_SSL_REDIRECT": "False",  # gunicorn serves plain http on loopback here
            "SECRET_KEY": "bench-" + "k" * 50,
            "ALLOWED_HOSTS": "testserver,127.0.0.1",
            **extra_env,
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- interleaved rounds ---------------------------------------------------------------------
# Every figure is a ratio from rounds in which each side runs once, in a shuffled order, so
# that a noisy neighbour slows both sides of a round alike. A side is a callable that runs
# one round and returns (seconds, items done); it may run in this process or drive another.

MIN_ROUNDS = 5


def interleaved(sides: dict, rounds: int = MIN_ROUNDS, *, seed: int | None = None) -> dict:
    """Run each side once per round, sides shuffled per round; {side: [items/s per round]}."""
    import random

    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds")
    rng = random.Random(seed)  # an order to run things in, not a secret
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        order = list(sides)
        rng.shuffle(order)
        for name in order:
            seconds, items = sides[name]()
            rates[name].append(items / seconds)
    return rates


def ratios(rates: dict, numerator: str, denominator: str) -> list[float]:
    """Per-round ratios of two sides' rates (same round with same round)."""
    return [a / b for a, b in zip(rates[numerator], rates[denominator], strict=True)]


def spread(values: list[float]) -> dict:
    """Median, min and max of per-round values."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": len(values),
    }


def shown(s: dict, digits: int = 3) -> str:
    """A spread as `median [min-max]`."""
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"
