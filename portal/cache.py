"""The cache: Redis, with a process-local stand-in while Redis cannot be reached.

Login rate limits, login codes' throttles and used TOTP codes live in the cache. Without a
stand-in a Redis outage answers every login with 500; with it, logins keep working under
limits that are counted per process instead of across processes (degraded, and logged).
The Celery broker is another connection and is not affected by this.
"""
from __future__ import annotations

import logging
import threading
import time

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("portal.cache")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
# After a failure Redis is not asked again for this long: a down server costs one connection
# attempt per few seconds, not one (with its timeout) per cache call.
RETRY_AFTER_SECONDS = 5.0
# At most one warning per this many seconds while Redis stays down.
LOG_EVERY_SECONDS = 60.0


class _Outage:
    """Shared by every thread's cache object for one Redis location."""

    def __init__(self):
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.since: float | None = None
        self.logged_at = 0.0
        self.failures = 0


_outages: dict[str, _Outage] = {}
_outages_lock = threading.Lock()


def _outage_for(location: str) -> _Outage:
    with _outages_lock:
        return _outages.setdefault(location, _Outage())


class ResilientRedisCache(RedisCache):
    """Django's Redis cache; while Redis is unreachable, a LocMemCache answers instead."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._location = server if isinstance(server, str) else ",".join(server)
        self._outage = _outage_for(self._location)
        # LocMemCache instances with one name share their store within the process.
        self._fallback = LocMemCache(f"portal-cache-fallback:{self._location}",
                                     {**{k: v for k, v in params.items() if k != "OPTIONS"},
                                      "OPTIONS": {"MAX_ENTRIES": 10_000}})

    def _call(self, name, *args, **kwargs):
        if time.monotonic() < self._outage.down_until:
            return getattr(self._fallback, name)(*args, **kwargs)
        try:
            result = getattr(super(), name)(*args, **kwargs)
        except UNREACHABLE as error:
            self._went_down(error)
            return getattr(self._fallback, name)(*args, **kwargs)
        if self._outage.since is not None:
            self._came_back()
        return result

    def _went_down(self, error: Exception) -> None:
        now = time.monotonic()
        with self._outage.lock:
            self._outage.down_until = now + RETRY_AFTER_SECONDS
            self._outage.failures += 1
            if self._outage.since is None:
                self._outage.since = now
            if now - self._outage.logged_at < LOG_EVERY_SECONDS and self._outage.logged_at:
                return
            self._outage.logged_at = now
            failures = self._outage.failures
        logger.warning("cache: Redis unreachable (%s: %s); using a per-process cache, so rate limits "
                       "are counted per process until it is back (%d failures so far)",
                       type(error).__name__, error, failures)

    def _came_back(self) -> None:
        with self._outage.lock:
            if self._outage.since is None:
                return
            down_for = time.monotonic() - self._outage.since
            self._outage.since, self._outage.failures, self._outage.logged_at = None, 0, 0.0
        logger.warning("cache: Redis reachable again after %.0f s; shared rate limits restored", down_for)

    def add(self, *args, **kwargs):
        return self._call("add", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._call("set", *args, **kwargs)

    def touch(self, *args, **kwargs):
        return self._call("touch", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._call("get_many", *args, **kwargs)

    def has_key(self, *args, **kwargs):
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._call("incr", *args, **kwargs)

    def set_many(self, *args, **kwargs):
        return self._call("set_many", *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._call("delete_many", *args, **kwargs)

    def clear(self):
        return self._call("clear")
