"""The engine's one clock, so that every "now" is timezone-aware UTC."""

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
