"""Turning librdkafka's errors and log lines into readable, rate-limited Python logging."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import KafkaError, KafkaException

_INTERVAL_S = 30.0
_MAX_KEYS = 1000


def kafka_error(exc: BaseException | None) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe(error: object) -> str:
    """``NAME (text)`` for a KafkaError (or a KafkaException carrying one), else ``str(error)``."""
    if isinstance(error, BaseException):
        error = kafka_error(error) or error
    if isinstance(error, KafkaError):
        return f"{error.name()} ({error.str()})"
    return str(error)


class _RateLimit:
    """Lets one event per key through per interval and counts the ones it held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._lock = threading.Lock()
        self._seen: dict[object, tuple[float, int]] = {}

    def admit(self, key: object) -> int | None:
        """None to drop the event; else how many were dropped since the last one let through."""
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self._interval:
                self._seen[key] = (last, held + 1)
                return None
            if len(self._seen) >= _MAX_KEYS:
                self._seen.clear()
            self._seen[key] = (now, 0)
            return held


class ThrottledLog:
    """Logs a recurring client error once per error code and interval (a down broker repeats them)."""

    def __init__(self, logger: logging.Logger, interval_s: float = _INTERVAL_S) -> None:
        self._log = logger
        self._limit = _RateLimit(interval_s)

    def warning(self, code: int, message: str, *args: object) -> None:
        held = self._limit.admit(code)
        if held:
            self._log.warning(message + " (%d more since)", *args, held)
        elif held is not None:
            self._log.warning(message, *args)


class LibrdkafkaLog:
    """What confluent_kafka's ``logger`` option calls: librdkafka log lines into Python logging.

    While a broker is down librdkafka logs a failed connect several times a second per client;
    warnings and errors are passed on once per (facility, broker) and interval instead, with the
    number held back. Debug and info lines (``debug=...`` in the URL) all pass.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = _INTERVAL_S) -> None:
        self._log = logger
        self._limit = _RateLimit(interval_s)

    def log(self, level: int, message: str, *args: object) -> None:
        # confluent_kafka calls log(level, "%s [%s] %s", facility, client name, text).
        if level >= logging.WARNING and len(args) == 3:
            facility, _, text = args
            held = self._limit.admit((facility, str(text).split(": ", 1)[0]))  # text starts "broker: "
            if held is None:
                return
            if held:
                message, args = message + " (%d similar held back)", (*args, held)
        self._log.log(level, message, *args)


CLIENT_LOG = LibrdkafkaLog(logging.getLogger("logflow.kafka.client"))
