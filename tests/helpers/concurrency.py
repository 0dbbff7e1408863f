"""Concurrency for the PostgreSQL tests: run one action in many threads at the same instant."""

from __future__ import annotations

import threading

from django.db import connections


def race(action, count: int):
    """Run action in `count` threads released at the same instant; return results and errors."""
    barrier = threading.Barrier(count)
    results, errors = [], []
    lock = threading.Lock()

    def run():
        try:
            barrier.wait()
            outcome = action()
            with lock:
                results.append(outcome)
        except Exception as exc:  # every outcome is collected and asserted
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors
