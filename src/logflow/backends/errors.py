"""Errors every backend adapter raises, so callers never depend on an engine's own exceptions."""

from __future__ import annotations


class BackendError(Exception):
    """Base class for backend failures."""


class BackendUnavailable(BackendError):
    """The engine cannot be reached right now; retrying later may succeed."""


class QueueFull(BackendError):
    """The queue refuses more data until consumers catch up (maps to HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageFull(BackendError):
    """The disk under the data directory is nearly full (maps to HTTP 507)."""

    def __init__(self, message: str, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ReplayInProgress(BackendError):
    """Another replay of the same dead-letter replay group is running (maps to HTTP 409)."""
