"""Redis cache for the distributed shape: shared by every API process, best-effort by design.

Every call is guarded: when Redis is unreachable ``get`` misses, ``set``/``clear`` do nothing,
``stats`` reports ``connected=False`` and ``healthy`` is False — a request never fails because the
cache did. Short socket timeouts bound how long a dead Redis can hold a request, and a small
circuit breaker stops retrying on every call: after a connection failure calls short-circuit for
``retry_after_s``, then one caller probes again. Reconnection is automatic (the pool opens a new
connection on the next call that gets through).

Keys live under a namespace (default ``logflow:``): cache entries as ``<namespace>cache:<key>``,
rate-limit windows as ``<namespace>rate:<key>``. So ``clear(None)`` empties LogFlow's cache only —
not another application's keys in a shared Redis database, nor the rate limiter's counters.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from logflow.backends.cache.base import CacheStats

log = logging.getLogger(__name__)

T = TypeVar("T")

_DOWN = CacheStats(connected=False, used_memory="0B", connected_clients=0, keyspace_hits=0,
                   keyspace_misses=0, keys=0)


class RedisCache:
    """The ``Cache`` port over redis-py: values are stored exactly as given, keys under ``namespace``."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "logflow:",
        connect_timeout_s: float = 0.5,
        socket_timeout_s: float = 0.5,
        retry_after_s: float = 1.0,
        scan_batch: int = 500,
    ) -> None:
        self._retry_after = retry_after_s
        self._cache_prefix = f"{namespace}cache:"
        self._rate_prefix = f"{namespace}rate:"
        self._batch = scan_batch
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
            # One immediate retry on a connection error only: it replaces a pooled connection the
            # server closed (e.g. after a Redis restart). Timeouts are never retried.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=False,
        )
        self._lock = threading.Lock()
        self._open_until = 0.0  # circuit breaker: monotonic time before which calls short-circuit
        self._down = False  # for logging transitions only

    # -- circuit breaker -------------------------------------------------------------------------

    def _admit(self) -> bool:
        """Whether a call may reach Redis now; while open, exactly one caller probes per period."""
        if self._open_until == 0.0:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._open_until:
                return False
            self._open_until = now + self._retry_after  # this caller probes; the rest wait
            return True

    def _guard(self, op: str, call: Callable[[redis.Redis], T], default: T) -> T:
        if not self._admit():
            return default
        try:
            result = call(self._client)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            with self._lock:
                self._open_until = time.monotonic() + self._retry_after
                if not self._down:
                    self._down = True
                    log.warning("redis cache unreachable (%s: %s); degrading to no cache", op, exc)
            return default
        except RedisError as exc:  # a command error, not an outage: the cache stays closed
            log.warning("redis cache %s failed: %s", op, exc)
            return default
        if self._open_until or self._down:
            with self._lock:
                self._open_until = 0.0
                if self._down:
                    self._down = False
                    log.warning("redis cache reachable again")
        return result

    # -- Cache port --------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        def call(client: redis.Redis) -> bytes | None:
            value = client.get(self._cache_prefix + key)
            if value is None:
                return None
            return value if isinstance(value, bytes) else value.encode()

        return self._guard("get", call, None)

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        def call(client: redis.Redis) -> None:
            client.set(self._cache_prefix + key, value, ex=max(1, int(ttl_s)))

        self._guard("set", call, None)

    def clear(self, pattern: str | None) -> int:
        """SCAN + UNLINK in batches of ``scan_batch`` (never KEYS); 0 when Redis is unreachable."""
        match = _glob_escape(self._cache_prefix) + (pattern or "*")

        def call(client: redis.Redis) -> int:
            deleted = 0
            batch: list[bytes] = []
            for key in client.scan_iter(match=match, count=self._batch):
                batch.append(key)
                if len(batch) >= self._batch:
                    deleted += int(client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(client.unlink(*batch))
            return deleted

        return self._guard("clear", call, 0)

    def stats(self) -> CacheStats:
        """INFO counters (server-wide) and ``keys`` = DBSIZE of the database, as the seed reported."""

        def call(client: redis.Redis) -> CacheStats:
            pipe = client.pipeline(transaction=False)
            pipe.info()
            pipe.dbsize()
            info, size = pipe.execute()
            return _stats_from(info, int(size))

        return self._guard("stats", call, _DOWN)

    def healthy(self) -> bool:
        return self._guard("ping", lambda client: bool(client.ping()), False)

    def incr_window(self, key: str, window_s: int, amount: int = 1) -> int:
        """Add ``amount`` hits to the fixed window ``key`` (expires ``window_s`` after its first hit).

        Returns the count so far in the window, or 0 when Redis is unreachable (callers fail open).
        """
        name = self._rate_prefix + key

        def call(client: redis.Redis) -> int:
            pipe = client.pipeline(transaction=True)
            pipe.incrby(name, amount)
            pipe.expire(name, max(1, int(window_s)), nx=True)
            count, _ = pipe.execute()
            return int(count)

        return self._guard("incr_window", call, 0)

    def close(self) -> None:
        self._client.close()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _stats_from(info: dict[str, Any], keys: int) -> CacheStats:
    return CacheStats(
        connected=True,
        used_memory=str(info.get("used_memory_human", "0B")),
        connected_clients=int(info.get("connected_clients", 0)),
        keyspace_hits=int(info.get("keyspace_hits", 0)),
        keyspace_misses=int(info.get("keyspace_misses", 0)),
        keys=keys,
    )
