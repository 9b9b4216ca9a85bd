"""The cache port: JSON values with a time to live, plus the stats and clearing the API exposes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class CacheStats:
    """The seed's ``GET /api/v1/cache/stats`` fields."""

    connected: bool
    used_memory: str
    connected_clients: int
    keyspace_hits: int
    keyspace_misses: int
    keys: int


class Cache(Protocol):
    """A best-effort cache: a failing cache must never fail the request that uses it.

    ``get`` returns None on a miss or when the cache is unreachable; ``set`` silently gives up
    when unreachable. ``healthy`` tells ``/health`` whether the cache is degraded.
    """

    kind: str

    def get(self, key: str) -> bytes | None:
        """The cached bytes or None."""
        ...

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Cache ``value`` under ``key`` for ``ttl_s`` seconds."""
        ...

    def incr_window(self, key: str, window_s: int, amount: int = 1) -> int:
        """Add ``amount`` to the counter ``key``, which expires ``window_s`` after its first hit.

        The rate limiter's primitive (fixed windows: callers put the window's number in ``key``).
        Returns the count so far in the window, or 0 when the cache is unreachable, so limits fail
        open rather than failing requests. Counters are separate from cached values:
        ``clear`` never resets them.
        """
        ...

    def clear(self, pattern: str | None) -> int:
        """Delete keys matching a glob pattern (all when None); returns how many."""
        ...

    def stats(self) -> CacheStats:
        """Counters in the seed's shape."""
        ...

    def healthy(self) -> bool:
        """False while the cache cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
