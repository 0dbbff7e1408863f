"""Slowing down guessing and flooding: counters in Django's cache, nothing in the database.

Two shapes, each written once: a fixed window ("at most count uses per seconds") for
enrollments, email confirmation codes and mail per recipient, and a growing lockout for
wrong passphrases. Scopes are strings such as
"enroll:<ip>"; they are hashed into cache keys, so any text is safe to use.

Every counter is one atomic step of the cache (`add`, then `incr`), so processes that share
the cache (CACHE_URL=redis://..., as production must) and concurrent requests together get
exactly the configured budget. A lockout is a check and a count around a slow step (the
passphrase's KDF): `one_at_a_time(scope)` holds a short lock in the cache while they run,
so that concurrent guesses in one scope are judged one after another.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F

#: The time source; tests replace it to move time forward without sleeping.
clock = time.time

#: A lock of one_at_a_time() expires after this many seconds even if its process died.
LOCK_SECONDS = 30
#: How long one_at_a_time() waits for a scope that another request holds, and how often it looks.
LOCK_WAIT_SECONDS = 10.0
_LOCK_POLL_SECONDS = 0.02


class Busy(Exception):
    """Another request held the scope for longer than LOCK_WAIT_SECONDS."""


def _key(kind: str, scope: str) -> str:
    return f"ca-portal:{kind}:{hashlib.sha256(scope.encode()).hexdigest()}"


def _increment(key: str, timeout: int) -> int:
    """Add one to a counter that expires timeout seconds after it was made; return it."""
    while True:
        cache.add(key, 0, timeout=timeout)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: make it again
            continue
        if count == 1:
            # Redis's INCR makes a key without expiry when it vanished just after the
            # backend's existence check; a first count always gets its timeout.
            cache.touch(key, timeout)
        return count


# --- a fixed window (enrollments) ------------------------------------------------------


def parse_rate(rate: str) -> tuple[int, int]:
    """The (count, seconds) of a rate written "count/seconds", such as "60/3600"."""
    match = re.fullmatch(r"(\d+)/([1-9]\d*)", rate, re.ASCII)
    if match is None:
        raise ValueError(f"a rate looks like 60/3600 (count/seconds), not {rate!r}")
    return int(match[1]), int(match[2])


def _window(scope: str, rate: str) -> tuple[str, int, int]:
    """The counter key of scope in rate's current window, the limit and the window's length."""
    limit, window = parse_rate(rate)
    bucket = int(clock() // window)
    return _key(f"rate-{bucket}", scope), limit, window


def within_rate(scope: str, rate: str) -> bool:
    """Count one use by scope in the current window; False once it has used more than rate."""
    key, limit, window = _window(scope, rate)
    return _increment(key, timeout=window) <= limit


def over_rate(scope: str, rate: str) -> bool:
    """True when scope has used up rate in the current window (nothing is counted)."""
    key, limit, _ = _window(scope, rate)
    return (cache.get(key) or 0) >= limit


def window_ends(rate: str) -> datetime:
    """When the current window of rate ends and its counts start again from zero."""
    _, window = parse_rate(rate)
    return datetime.fromtimestamp((int(clock() // window) + 1) * window, UTC)


def within_shared_rate(scope: str, rate: str) -> bool:
    """within_rate, counted in the database: shared by every process whatever the cache
    (the default cache is each process's own memory)."""
    key, limit, _ = _window(scope, rate)
    return _count_in_database(key, window_ends(rate)) <= limit


def _count_in_database(key: str, expires_at: datetime) -> int:
    """Add one to the counter key, made when missing; return it. The UPDATE is one atomic
    step in the database, so concurrent processes count each use exactly once."""
    from .models import RateCount

    with transaction.atomic():
        if not RateCount.objects.filter(key=key).update(count=F("count") + 1):
            try:
                with transaction.atomic():
                    RateCount.objects.create(key=key, count=1, expires_at=expires_at)
            except IntegrityError:  # another process made it first
                RateCount.objects.filter(key=key).update(count=F("count") + 1)
        count = RateCount.objects.filter(key=key).values_list("count", flat=True).get()
    if count == 1:  # a new window: forget the ones that are over
        RateCount.objects.filter(expires_at__lt=datetime.fromtimestamp(clock(), UTC)).delete()
    return count


def enrollment_rate() -> str:
    return settings.ENROLL_RATE_LIMIT


def server_key_enrollment_rate() -> str:
    return f"{settings.SERVER_KEY_ENROLL_RATE_LIMIT}/3600"


def enrollment_allowed(ip: str | None) -> bool:
    """Count one enrollment from ip (web form or Dogtag profileSubmit) against ENROLL_RATE_LIMIT."""
    return within_shared_rate(f"enroll:{ip}", enrollment_rate())


def server_key_enrollment_allowed(ip: str | None) -> bool:
    """Count one enrollment with a server-made key from ip: SERVER_KEY_ENROLL_RATE_LIMIT an hour."""
    return within_shared_rate(f"server-key-enroll:{ip}", server_key_enrollment_rate())


def try_again_message(rate: str) -> str:
    """The sentence that tells a refused requester when the limit of rate lets them in again."""
    ends = window_ends(rate)
    minutes = max(1, math.ceil((ends.timestamp() - clock()) / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Try again after {ends:%Y-%m-%d %H:%M} UTC (in {minutes} {unit})."


def certificate_login_allowed(ip: str | None) -> bool:
    """Count one certificate login attempt from ip against CERTIFICATE_LOGIN_RATE_LIMIT (each
    one writes an audit row, so a flood must not fill the log)."""
    return within_rate(f"certificate-login:{ip}", settings.CERTIFICATE_LOGIN_RATE_LIMIT)


# --- wrong email confirmation codes ----------------------------------------------------


def confirmation_guesses_left(public_id: str, ip: str | None) -> bool:
    """False once the request, or the client address, has used up its wrong codes
    (EMAIL_CONFIRMATION_RATE_LIMIT each)."""
    rate = settings.EMAIL_CONFIRMATION_RATE_LIMIT
    return not (over_rate(f"confirm:{public_id}", rate) or over_rate(f"confirm-ip:{ip}", rate))


def record_wrong_confirmation(public_id: str, ip: str | None) -> None:
    """Count one wrong code against the request and against the client address."""
    rate = settings.EMAIL_CONFIRMATION_RATE_LIMIT
    within_rate(f"confirm:{public_id}", rate)
    within_rate(f"confirm-ip:{ip}", rate)


# --- mail per recipient and day ----------------------------------------------------------
#
# Anybody can type a stranger's address into the enrollment form. Two counters per address
# and UTC day, each against MAIL_PER_RECIPIENT_PER_DAY: mail sent to it (counted when it is
# sent, so a queue of waiting deliveries cannot slip past), and enrollments naming it
# (counted at once, so a burst faster than the delivery worker cannot either).

DAY = 86400


def _mail_scope(address: str) -> str:
    return f"mail-to:{address.strip().lower()}"


def _mail_rate() -> str:
    return f"{settings.MAIL_PER_RECIPIENT_PER_DAY}/{DAY}"


def enrollment_mail_allowed(address: str) -> bool:
    """Count one enrollment naming address; False when that address had its day's mail,
    or this many enrollments named it today."""
    if over_rate(_mail_scope(address), _mail_rate()):
        return False
    return within_rate(f"enroll-{_mail_scope(address)}", _mail_rate())


def take_mail_allowance(address: str) -> bool:
    """Count one mail to address; False (and nothing sent, the caller holds it) when the
    address had its day's mail already."""
    return within_rate(_mail_scope(address), _mail_rate())


def next_mail_day() -> float:
    """When the per-recipient counters start again (the next UTC midnight), epoch seconds."""
    return (int(clock() // DAY) + 1) * DAY


# --- failures with a growing lockout (wrong passphrases) ----------------------------


@contextmanager
def one_at_a_time(scope: str) -> Iterator[None]:
    """Run the block while no other request (thread, process, machine sharing the cache) runs
    a block for scope: a lock taken with cache.add. Waits up to LOCK_WAIT_SECONDS for it,
    then raises Busy. Nest scopes always in the same order (address, then certificate)."""
    key, token = _key("one-at-a-time", scope), secrets.token_hex(16)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not cache.add(key, token, timeout=LOCK_SECONDS):
        if time.monotonic() >= deadline:
            raise Busy(scope)
        time.sleep(_LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        if cache.get(key) == token:  # not a lock that expired and another request took
            cache.delete(key)


def lockout_remaining(scope: str) -> int:
    """Seconds until scope may try again; 0 when it may try now."""
    until = cache.get(_key("locked-until", scope))
    return max(0, math.ceil(until - clock())) if until else 0


def record_failure(scope: str, *, free: int | None = None) -> int:
    """Count one failure; return the lockout in seconds it earns (0 while attempts are free).

    `free` failures (KEY_DOWNLOAD_FREE_ATTEMPTS unless given) earn nothing; each one after
    them locks scope twice as long as the one before. Call it under one_at_a_time(scope)
    together with the lockout_remaining() check, so concurrent failures cannot slip past."""
    free = settings.KEY_DOWNLOAD_FREE_ATTEMPTS if free is None else free
    longest = settings.KEY_DOWNLOAD_LOCKOUT_MAX_SECONDS
    # Failures are forgotten a day after the last one, so a person who mistypes now and
    # then never reaches the long lockouts.
    forget_after = max(longest, 86400)
    key = _key("failures", scope)
    failures = _increment(key, timeout=forget_after)
    cache.touch(key, forget_after)
    beyond = failures - free
    if beyond <= 0:
        return 0
    lockout = min(settings.KEY_DOWNLOAD_LOCKOUT_SECONDS * 2 ** (beyond - 1), longest)
    cache.set(_key("locked-until", scope), clock() + lockout, timeout=lockout + 1)
    return lockout


def clear_failures(scope: str) -> None:
    """Forget the failures of scope (after a success)."""
    cache.delete_many([_key("failures", scope), _key("locked-until", scope)])
