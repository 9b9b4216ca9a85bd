"""Fixed-window rate limits over the cache's ``incr_window`` counters.

With ``memory://`` the counters live in the API process (the embedded shape has one); with
``redis://`` every API replica counts in the same Redis keys, so a limit holds across replicas.
Window keys carry the window's number (``<key>:<epoch // window>``), which makes ``Retry-After``
exact without asking the cache for a TTL. A cache outage makes ``incr_window`` return 0: limits
fail open rather than turning a cache problem into refused logins.
"""

from __future__ import annotations

import math
import time

from logflow.backends.cache.base import Cache


class RateLimited(Exception):
    """Over the limit; retry after ``retry_after`` seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"too many {what}; retry in {retry_after} s")
        self.what = what
        self.retry_after = retry_after


class RateLimiter:
    """Counts hits per key in fixed windows and raises RateLimited past a limit (0: no limit)."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    def hit(self, key: str, *, limit: int, window_s: int, amount: int = 1, what: str = "requests") -> int:
        """Add ``amount`` to ``key``'s current window; RateLimited when the total passes ``limit``."""
        if limit <= 0:
            return 0
        now = time.time()
        window = int(now // window_s)
        count = self._cache.incr_window(f"{key}:{window}", window_s, amount)
        if count > limit:
            raise RateLimited(what=what, retry_after=max(1, math.ceil((window + 1) * window_s - now)))
        return count
