"""Slowing down failed attempts, never a permitted one.

A kill switch that answers 429 during a crash is a defect, so nothing here ever
looks at a request whose user is permitted to do what it asks. Only refusals
are counted, per client address, over a sliding window. Once an address
has failed `KILLSWITCH_FAILED_ATTEMPTS_LIMIT` times in a window of
`KILLSWITCH_FAILED_ATTEMPTS_WINDOW` seconds, its further unauthenticated or
unpermitted requests are answered 429 at once, before any service runs.

Why it matters beyond brute force (tokens carry 240 random bits): every refusal
is an audit event appended under the audit chain's lock, so a flood of refusals
would compete with activations for that lock. A throttled address leaves one
audit event per window ("rate limited", with the address), not one per request.

Counts live in the Django cache (`KILLSWITCH_THROTTLE_CACHE`, default "default"), which
is the shared Redis cache (django-redis, riskcontrol/settings.py CACHES): every server
process counts against the same limit. A cache failure never blocks a request.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import caches

from killswitch.services.errors import KillSwitchError

logger = logging.getLogger("killswitch")


class RateLimited(KillSwitchError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _limit() -> int:
    return int(getattr(settings, "KILLSWITCH_FAILED_ATTEMPTS_LIMIT", 20))


def _window() -> int:
    return max(1, int(getattr(settings, "KILLSWITCH_FAILED_ATTEMPTS_WINDOW", 60)))


def _cache():
    return caches[getattr(settings, "KILLSWITCH_THROTTLE_CACHE", "default")]


def _window_keys(address: str) -> tuple[str, str, str, float, int]:
    """(this window's key, the previous window's, this window's audit key, how far into
    this window we are (0-1), seconds until it ends)."""
    window = _window()
    now = time.time()
    index = int(now // window)
    retry_after = max(1, int(window - now % window + 0.999))
    return (f"ks:failed:{address}:{index}", f"ks:failed:{address}:{index - 1}",
            f"ks:throttled:{address}:{index}", (now % window) / window, retry_after)


def record_failure(address: str | None) -> None:
    """Count one refused request from `address`."""
    if not address:
        return
    key = _window_keys(address)[0]
    try:
        cache = _cache()
        cache.add(key, 0, 2 * _window() + 1)  # read again as the previous window
        cache.incr(key)
    except Exception:  # never let the counter break an answer
        logger.warning("could not count a failed attempt", exc_info=True)


def check_failures(address: str | None) -> RateLimited | None:
    """The error to answer with if `address` is over its failure limit, else None.

    The returned error's `first_in_window` tells the caller whether to audit it
    (once per address and window)."""
    if not address:
        return None
    key, previous_key, throttled_key, elapsed, retry_after = _window_keys(address)
    try:
        cache = _cache()
        counts = cache.get_many([key, previous_key])
        # A sliding window: the previous window weighs what is left of it, so crossing
        # into a new window never resets an address that keeps failing.
        failures = int(counts.get(key, 0) + counts.get(previous_key, 0) * (1 - elapsed))
        if failures < _limit():
            return None
        first = cache.add(throttled_key, 1, _window() + 1)
    except Exception:
        logger.warning("could not read the failed-attempt counter", exc_info=True)
        return None
    error = RateLimited(
        f"Too many failed attempts from {address}: {failures} refused requests in the last "
        f"{_window()} seconds. Try again in {retry_after} seconds with valid credentials; "
        "permitted users are never rate limited.",
        retry_after=retry_after,
    )
    error.first_in_window = first
    return error
