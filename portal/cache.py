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
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
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


class _RedisCacheClient(RedisCacheClient):
    """Django's client with one redis.Redis per connection pool, made once, instead of a new one
    for every cache call: making one copies Redis's two hundred response callbacks into a new
    dict, 0.2 ms of CPU a call (the webhook intake counts its rate limits on every request).
    A redis.Redis over a pool is safe to share between threads."""

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        clients = self.__dict__.setdefault("_clients", {})
        client = clients.get(id(pool))
        if client is None:
            client = clients[id(pool)] = self._client(connection_pool=pool)
        return client


class ResilientRedisCache(RedisCache):
    """Django's Redis cache; while Redis is unreachable, a LocMemCache answers instead."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _RedisCacheClient
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

    def count(self, key, timeout: int) -> int:
        """Add one to the counter at `key` (made, when new, to live `timeout` seconds) and return
        it, in one round trip to Redis (INCR and EXPIRE in a pipeline), where add() then incr()
        take three (Django's incr() asks whether the key exists first): the webhook intake and the
        API count every request this way (portal.webhooks.rate_over). The expiry is set again on
        every count, so a counter outlives its last count by `timeout` seconds: keys that name
        their window (as rate_over's do) are never counted past it."""
        if time.monotonic() < self._outage.down_until:
            return self._fallback_count(key, timeout)
        try:
            made = self.make_and_validate_key(key)
            pipeline = self._cache.get_client(made, write=True).pipeline(transaction=False)
            pipeline.incr(made)
            pipeline.expire(made, timeout)
            count, _ = pipeline.execute()
        except UNREACHABLE as error:
            self._went_down(error)
            return self._fallback_count(key, timeout)
        if self._outage.since is not None:
            self._came_back()
        return count

    # count() of each key in turn, stopping after the first that is over its limit.
    COUNT_IN_TURN_LUA = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    redis.call('EXPIRE', key, ARGV[2 * i - 1])
    if counts[i] > tonumber(ARGV[2 * i]) then break end
end
return counts
"""

    def count_in_turn(self, counters: list[tuple[str, int, int]]) -> list[int]:
        """count() for each (key, timeout, limit) in turn until one is over its limit: the
        counts, as many as were made (the keys after that one are not counted). In one round
        trip (a Lua script, which Redis runs as one command): the webhook intake counts a request
        against its address, then its account (portal.webhooks.rates_over)."""
        if time.monotonic() < self._outage.down_until:
            return self._fallback_count_in_turn(counters)
        try:
            client = self._cache.get_client(None, write=True)
            script = self.__dict__.get("_count_in_turn")
            if script is None or script.registered_client is not client:
                script = self._count_in_turn = client.register_script(self.COUNT_IN_TURN_LUA)
            counts = script(keys=[self.make_and_validate_key(key) for key, _, _ in counters],
                            args=[value for _, timeout, limit in counters for value in (timeout, limit)])
        except UNREACHABLE as error:
            self._went_down(error)
            return self._fallback_count_in_turn(counters)
        if self._outage.since is not None:
            self._came_back()
        return [int(count) for count in counts]

    def _fallback_count_in_turn(self, counters: list[tuple[str, int, int]]) -> list[int]:
        counts = []
        for key, timeout, limit in counters:
            counts.append(self._fallback_count(key, timeout))
            if counts[-1] > limit:
                break
        return counts

    def _fallback_count(self, key, timeout: int) -> int:
        try:
            return 1 if self._fallback.add(key, 1, timeout=timeout) else self._fallback.incr(key)
        except ValueError:  # expired between add and incr: a new window
            return 1

    # numbered(): the counter started when absent, counted, and the value kept under its number.
    NUMBERED_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) end
local number = redis.call('INCR', KEYS[1])
redis.call('SET', ARGV[2] .. number, ARGV[3], 'EX', ARGV[4])
return number
"""

    def numbered(self, counter: str, prefix: str, value, *, timeout: int, start: int) -> int:
        """Count one at `counter` (started at `start` when it is not there) and keep `value` under
        `prefix` followed by the new count, for `timeout` seconds: the count, never seen without
        its value. One command to Redis (a Lua script), so a reader that sees the count finds the
        value (portal.live: a page polling between an INCR and a SET was told only "updated",
        the change's own words lost)."""
        if time.monotonic() < self._outage.down_until:
            return self._fallback_numbered(counter, prefix, value, timeout=timeout, start=start)
        try:
            client = self._cache.get_client(None, write=True)
            script = self.__dict__.get("_numbered")
            if script is None or script.registered_client is not client:
                script = self._numbered = client.register_script(self.NUMBERED_LUA)
            # The value's key as make_key() makes it for prefix + the number (the key function
            # puts the key last), and the value serialized as get() reads it back.
            made_prefix = self.make_and_validate_key(prefix + "0")[:-1]
            number = script(keys=[self.make_and_validate_key(counter)],
                            args=[start, made_prefix, self._cache._serializer.dumps(value), timeout])
        except UNREACHABLE as error:
            self._went_down(error)
            return self._fallback_numbered(counter, prefix, value, timeout=timeout, start=start)
        if self._outage.since is not None:
            self._came_back()
        return int(number)

    _numbered_lock = threading.Lock()

    def _fallback_numbered(self, counter: str, prefix: str, value, *, timeout: int, start: int) -> int:
        with self._numbered_lock:
            self._fallback.add(counter, start, timeout=None)
            number = self._fallback.incr(counter)
            self._fallback.set(f"{prefix}{number}", value, timeout=timeout)
        return number

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
