"""Request rates for the API's busy doors (predict, token creation, uploads, telemetry), set from
the environment (EDUMLOPS_THROTTLE_<SCOPE>, e.g. "600/min"; docs/security.md). Over the rate the
API answers 429 with `Retry-After`. Counts live in the shared cache, so every worker sees them.

A rate is counted as a sliding window of two fixed windows (this minute's count, plus last
minute's weighted by the part of it still inside the last 60 s): two small counters per caller,
so a check costs the same at 120/min as at 100,000/min (one round trip to Redis), where a log of
every request's time (DRF's SimpleRateThrottle) grows with the rate. A refused request does not
count."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

# INCR this window's count (expiring after two windows) and read the last window's, in one
# round trip: {count now, count of the last window}
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""


def _redis_counts(backend: RedisCache, current: str, previous: str, ttl: int) -> tuple[int, int]:
    script = getattr(backend, "_edumlops_count", None)
    if script is None:  # one client and registered script per cache object (one per thread)
        script = backend._edumlops_count = backend._cache.get_client(write=True).register_script(
            _COUNT
        )
    counted, before = script(
        keys=[backend.make_and_validate_key(current), backend.make_and_validate_key(previous)],
        args=[ttl],
    )
    return int(counted), int(before)


def uncount(current: str) -> None:
    """Take one request back out of a window's count (`current`, from `windows`)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        backend._cache.get_client(write=True).decr(backend.make_and_validate_key(current))
    else:
        with contextlib.suppress(ValueError):
            backend.decr(current)


def windows(key: str, period: int, now: float) -> tuple[str, str, float]:
    """The cache keys of this window's and the last window's counts of `key`, and the seconds
    since this window began."""
    window = int(now // period)
    return f"{key}:{window}", f"{key}:{window - 1}", now - window * period


def verdict(counted: int, before: int, limit: int, period: int, elapsed: float) -> float | None:
    """None if a request counted as the `counted`-th of this window (`before` in the last) is
    within `limit` per `period`; else the whole seconds to wait until one would be."""
    if before * (1 - elapsed / period) + counted <= limit:
        return None
    counted -= 1  # without the refused one
    if counted + 1 > limit:  # this window alone is full: into the next, until it slides out
        wait = (period - elapsed) + period * ((1 - (limit - 1) / counted) if counted else 1)
    else:  # until enough of the last window has slid out
        wait = period * (1 - (limit - counted - 1) / before) - elapsed
    return float(max(1, math.ceil(wait)))


def parse(rate: str) -> tuple[int, int]:
    """"120/min" → (120, 60)."""
    number, per = rate.split("/")
    return int(number), {"s": 1, "m": 60, "h": 3600, "d": 86400}[per[0]]


def hit(key: str, limit: int, period: int, now: float | None = None) -> float | None:
    """Count one request of `key` against `limit` per `period` seconds: None when it is
    allowed (and counted), else the seconds to wait before one would be."""
    now = time.time() if now is None else now
    current, previous, elapsed = windows(key, period, now)
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        counted, before = _redis_counts(backend, current, previous, 2 * period)
    else:  # the embedded default's file cache: not atomic, enough on one machine
        backend.add(current, 0, 2 * period)
        try:
            counted = backend.incr(current)
        except ValueError:  # expired between add and incr
            backend.set(current, 1, 2 * period)
            counted = 1
        before = int(backend.get(previous) or 0)
    wait = verdict(counted, before, limit, period, elapsed)
    if wait is not None:
        uncount(current)  # a refused request does not count
    return wait


class CallerRateThrottle(SimpleRateThrottle):
    """Counts the writes (not GET, HEAD or OPTIONS) per caller: a user (however signed in:
    session or any of their API keys, so making more keys buys no more requests), a key that is
    not a user's (integration token or edge node, by its id) or, for anonymous requests, the
    client address."""

    def allow_request(self, request: Any, view: Any) -> bool:
        # only requests that change something count: listing tokens or datasets is never limited
        if request.method in SAFE_METHODS or self.rate is None:
            return True
        self._wait = hit(self.get_cache_key(request, view), self.num_requests, self.duration)
        return self._wait is None

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)

    def get_rate(self) -> str | None:
        # read on each request (not frozen at import), so a deployment or a test can change it
        return settings.EDUMLOPS_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request: Any, view: Any) -> str:
        from edumlops.core.models import UserKey

        auth = getattr(request, "auth", None)
        user = getattr(request, "user", None)
        if isinstance(auth, UserKey):
            ident = f"user:{auth.user_id}"
        elif auth is not None and hasattr(auth, "pk") and not isinstance(auth, (str, bytes)):
            ident = f"{type(auth).__name__}:{auth.pk}"
        elif user is not None and getattr(user, "is_authenticated", False) and user.pk:
            ident = f"user:{user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PredictThrottle(CallerRateThrottle):
    scope = "predict"


class TokenThrottle(CallerRateThrottle):
    scope = "tokens"


class UploadThrottle(CallerRateThrottle):
    scope = "uploads"


class TelemetryThrottle(CallerRateThrottle):
    scope = "telemetry"
