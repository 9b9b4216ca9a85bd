"""In-process TTL cache for the embedded shape (one API process, so no sharing is needed)."""

from __future__ import annotations

import fnmatch
import threading
import time

from logflow.backends.cache.base import CacheStats


def human_bytes(n: int) -> str:
    """Redis-style ``used_memory_human`` (``1.23M``)."""
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.2f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{value:.2f}G"


class MemoryCache:
    """A dict with expiry times; bounded by ``max_entries`` (oldest entries evicted first)."""

    kind = "memory"

    def __init__(self, max_entries: int = 10_000, max_counters: int = 100_000) -> None:
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        # Rate-limit counters: key -> (expiry, count). Apart from _data so that clearing the cache
        # (an admin action, or every test's settle()) never resets a limit.
        self._counters: dict[str, tuple[float, int]] = {}
        self._max_counters = max_counters
        self._hits = 0
        self._misses = 0

    def get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._data[key]
                self._misses += 1
                return None
            self._hits += 1
            return entry[1]

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = (time.monotonic() + ttl_s, value)
            while len(self._data) > self._max:
                del self._data[next(iter(self._data))]

    def incr_window(self, key: str, window_s: int, amount: int = 1) -> int:
        """In-process fixed-window counter (the embedded shape has one API process)."""
        now = time.monotonic()
        with self._lock:
            entry = self._counters.get(key)
            if entry is None or entry[0] <= now:
                if len(self._counters) >= self._max_counters:
                    # Drop expired windows; a flood of distinct keys cannot grow memory without bound.
                    self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
                    while len(self._counters) >= self._max_counters:
                        del self._counters[next(iter(self._counters))]
                entry = (now + max(1, window_s), 0)
            count = entry[1] + amount
            self._counters[key] = (entry[0], count)
            return count

    def clear(self, pattern: str | None) -> int:
        with self._lock:
            keys = list(self._data) if pattern is None else [k for k in self._data if fnmatch.fnmatchcase(k, pattern)]
            for key in keys:
                del self._data[key]
            return len(keys)

    def stats(self) -> CacheStats:
        now = time.monotonic()
        with self._lock:
            live = [(k, v) for k, (exp, v) in self._data.items() if exp > now]
            size = sum(len(k) + len(v) for k, v in live)
            return CacheStats(
                connected=True, used_memory=human_bytes(size), connected_clients=1,
                keyspace_hits=self._hits, keyspace_misses=self._misses, keys=len(live),
            )

    def healthy(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._counters.clear()
