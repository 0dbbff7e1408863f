"""Database writes that must outlast a locked SQLite file or a dropped PostgreSQL connection.

A worker that has already handed a message to the mail server must record that, or the
message is sent again: so such a write is retried with backoff on a fresh connection
instead of giving up at the first "database is locked" or "server closed the connection".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from django.db import DatabaseError, InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

#: What a busy or vanished database raises (not a constraint or a programming error).
DATABASE_ERRORS = (OperationalError, InterfaceError)


def backoff_delay(failures: int, *, first: float = 0.2, maximum: float = 5.0) -> float:
    """Seconds to wait after the n-th consecutive failure: doubling from first to maximum."""
    return min(maximum, first * 2 ** max(failures - 1, 0))


def fresh_connection() -> None:
    """Drop this thread's connection (unless a transaction is open) so the next query
    reconnects; a connection the server closed is otherwise reused and fails again."""
    if not connection.in_atomic_block:
        # Closing a broken connection may fail too; it is gone either way.
        with contextlib.suppress(DatabaseError):
            connection.close()


def retry_database[T](what: str, write: Callable[[], T], *, seconds: float) -> T:
    """write(), retried on DATABASE_ERRORS with backoff for up to seconds; inside a
    transaction the error is raised at once (only the outermost caller may retry)."""
    deadline = time.monotonic() + seconds
    failures = 0
    while True:
        try:
            return write()
        except DATABASE_ERRORS as exc:
            failures += 1
            delay = backoff_delay(failures)
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: %s; trying again in %.1f s", what, exc, delay)
            fresh_connection()
            time.sleep(delay)
