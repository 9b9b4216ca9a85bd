"""``LogFlowHandler``: send Python ``logging`` records to LogFlow from a background thread.

Standard library only (``urllib.request``), so an application can copy or import this module
without installing LogFlow's own dependencies::

    import logging
    from logflow.handler import LogFlowHandler

    logging.getLogger().addHandler(LogFlowHandler("http://logflow:8000", api_key="...", service="billing"))

Guarantees (docs/shipper.md has the details):

* ``emit`` never blocks on the network and never raises: it serialises the record and appends it to
  a bounded in-memory queue. When the queue is full the OLDEST queued record is dropped (the newest
  records describe the present, and a deque drops in O(1)); ``dropped`` counts every record that
  was never delivered (queue overflow, unserialisable records, records still queued at ``close``).
* a daemon thread sends batches as gzip NDJSON to ``POST /api/v1/ingest``, retrying connection
  errors, timeouts, 429 and 5xx with exponential backoff (honouring ``Retry-After``); per-item
  rejections are final and counted in ``rejected``. Memory stays bounded by ``max_queue +
  batch_size`` records. Each record carries an id made when it is logged, so a batch sent again
  after a timeout that LogFlow had in fact taken is stored once.
* ``flush(timeout)`` waits until the queue is delivered or the timeout passes; ``close()`` flushes
  and stops the thread, each step bounded by ``timeout``. ``logging.shutdown`` (run at interpreter
  exit) calls ``close``, so exit never hangs for more than about ``2 * timeout``, even when LogFlow
  is down. A record emitted after ``close`` reopens the handler (``logging.config.dictConfig``
  closes every existing handler, yet leaves it attached to its loggers).
* after ``os.fork`` the child starts with an empty queue and its own sender thread (started on its
  first record): records queued in the parent are sent by the parent only.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import json
import logging
import os
import random
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import weakref
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def record_id(created: float) -> str:
    """A ULID for a record logged at ``created`` (48-bit milliseconds + 80 random bits, base 32):
    time-ordered like the ids LogFlow makes itself, unique without coordination. The form of
    ``logflow.domain.ids.new_ulid``, written out here because this module must work when copied
    alone into an application."""
    value = (int(created * 1000) & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_LEVELS = ((logging.CRITICAL, "CRITICAL"), (logging.ERROR, "ERROR"), (logging.WARNING, "WARN"),
           (logging.INFO, "INFO"), (logging.DEBUG, "DEBUG"))


def level_name(levelno: int) -> str:
    """LogFlow's level for a ``logging`` level number (custom levels map to the nearest one below)."""
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return "TRACE"


class _RetryLater(Exception):
    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class LogFlowHandler(logging.Handler):
    """A ``logging.Handler`` that batches records to LogFlow in a background thread (see module docs)."""

    def __init__(self, url: str, api_key: str | None = None, service: str | None = None, *,
                 batch_size: int = 200, flush_interval: float = 1.0, max_queue: int = 10_000,
                 timeout: float = 5.0, host: str | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        self.url = url.rstrip("/") + "/api/v1/ingest"
        self.api_key = api_key
        self.service = service or os.path.basename(sys.argv[0] or "") or "python"
        self.host = host or socket.gethostname()
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.timeout = timeout
        self.backoff_max = 30.0
        self.sent = 0  # accepted by LogFlow
        self.rejected = 0  # refused by LogFlow for good (per-item 4xx, bad credentials)
        self.dropped = 0  # never delivered: queue full, unserialisable, or still queued at close
        self.last_error: str | None = None
        self._init_state()
        weak = weakref.ref(self)

        def reinit_in_child() -> None:
            handler = weak()
            if handler is not None:
                handler._init_state()

        os.register_at_fork(after_in_child=reinit_in_child)

    def _init_state(self) -> None:
        """Fresh queue, lock and (lazily started) thread: at construction and in a forked child."""
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[bytes] = collections.deque()
        self._inflight = 0
        self._flushers = 0
        self._closing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported = False

    # -- the application side ---------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; O(1), never waits for the network, never raises."""
        try:
            line = self._serialise(record)
        except Exception:  # e.g. bad %-arguments: reported as logging reports it, counted, never raised
            with self._cond:
                self.dropped += 1
            self.handleError(record)
            return
        try:
            with self._cond:
                if self._closing:
                    # Reopened after close(), as logging's FileHandler does: logging.config.dictConfig
                    # (uvicorn calls it, for one) closes every existing handler but leaves it attached.
                    self._closing = False
                    if self._thread is not None and not self._thread.is_alive():
                        self._thread = None
                if len(self._queue) >= self.max_queue:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(line)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="logflow-handler", daemon=True)
                    self._thread.start()
                if len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
        except Exception:  # e.g. no new threads at interpreter shutdown
            self.dropped += 1

    def _serialise(self, record: logging.LogRecord) -> bytes:
        item: dict[str, Any] = {
            # Made here, once per record: a batch sent again after a timeout (LogFlow may have taken
            # it) carries the same ids, and the store keeps each record once.
            "id": record_id(record.created),
            "message": record.getMessage(),
            "timestamp": round(record.created * 1_000_000),
            "level": level_name(record.levelno),
            "service": self.service,
            "host": self.host,
            "logger": record.name,
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
            "thread": record.threadName,
            "process": record.process,
        }
        if record.exc_info and record.exc_info[0] is not None:
            item["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            item["exception_type"] = record.exc_info[0].__qualname__
        elif record.exc_text:
            item["exception"] = record.exc_text
        if record.stack_info:
            item["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS:
                item[key] = value  # extra= fields; service/host/request_id/... override the defaults
        try:
            text = json.dumps(item, default=repr, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN/Infinity somewhere in the extras: keep the record, stringify them
            text = json.dumps({k: v if isinstance(v, str | int) else repr(v) for k, v in item.items()},
                              default=repr, ensure_ascii=False)
        return text.encode("utf-8", errors="replace")

    def flush(self, timeout: float | None = None) -> None:
        """Wait (at most ``timeout`` s, default twice the request timeout) until queued records are delivered."""
        self.drain(timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Like ``flush``; True when everything queued was delivered (or finally rejected) in time."""
        limit = 2 * self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._cond:
            if self._thread is None:
                return not self._queue
            self._flushers += 1
            self._cond.notify_all()
            self._wake.set()
            try:
                while self._queue or self._inflight:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushers -= 1

    def close(self) -> None:
        """Flush and stop the sender thread, each bounded by ``timeout`` (so at most about twice that);
        what could not be delivered is counted as dropped. A later ``emit`` reopens the handler."""
        if not self._closing:
            self.drain(self.timeout)
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._wake.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(self.timeout)
            with self._cond:
                self.dropped += len(self._queue)
                self._queue.clear()
        super().close()

    # -- the sender thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval
                while not self._closing and len(self._queue) < self.batch_size:
                    if self._flushers and self._queue:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if self._queue:
                            break
                        deadline, left = time.monotonic() + self.flush_interval, self.flush_interval
                    self._cond.wait(left)
                if self._closing and not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                self._inflight = len(batch)
            delivered = self._deliver(batch) if batch else True
            with self._cond:
                if not delivered:
                    self.dropped += len(batch)
                self._inflight = 0
                self._cond.notify_all()
                if self._closing and not delivered:
                    return

    def _deliver(self, batch: list[bytes]) -> bool:
        """Send one batch until LogFlow answers for good; False when given up because the handler closes."""
        body = gzip.compress(b"\n".join(batch) + b"\n", compresslevel=5)
        delay = 0.5
        while True:
            try:
                self._post(body, len(batch))
                self._reported = False
                return True
            except _RetryLater as exc:
                self.last_error = str(exc)
                self._report(f"LogFlow unreachable ({exc}); retrying, records are queued (bounded)")
                wait = exc.retry_after_s if exc.retry_after_s is not None else delay * (0.5 + random.random() / 2)
                delay = min(delay * 2, self.backoff_max)
                self._wake.clear()
                if self._closing:
                    return False
                self._wake.wait(min(wait, 300.0))
                if self._closing:
                    return self._try_once(body, len(batch))

    def _try_once(self, body: bytes, count: int) -> bool:
        try:
            self._post(body, count)
            return True
        except _RetryLater:
            return False

    def _post(self, body: bytes, count: int) -> None:
        headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip",
                   "User-Agent": "logflow-handler"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, payload = response.status, response.read()
                retry_after = None
        except urllib.error.HTTPError as exc:
            with exc:  # holds the response body open: close it (no ResourceWarning)
                status, payload, retry_after = exc.code, exc.read(), exc.headers.get("Retry-After")
        except (OSError, ValueError) as exc:  # refused, reset, timeout, DNS
            raise _RetryLater(f"{type(exc).__name__}: {exc}") from None
        if status == 429 or status >= 500:
            try:
                after = float(retry_after) if retry_after else None
            except ValueError:
                after = None
            raise _RetryLater(f"HTTP {status}", after)
        accepted, reason = self._outcome(payload, status, count)
        with self._cond:
            self.sent += accepted
            self.rejected += count - accepted
        if accepted < count:
            self.last_error = f"HTTP {status}: {reason}"
            self._report(f"LogFlow rejected {count - accepted} record(s): {self.last_error}")

    @staticmethod
    def _outcome(payload: bytes, status: int, count: int) -> tuple[int, str]:
        """How many of the batch were accepted, and the first reason for a rejection."""
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        text = payload[:300].decode("utf-8", "replace")
        if isinstance(doc, dict) and isinstance(doc.get("accepted"), int):
            reasons = [r.get("error") for r in doc.get("results") or [] if isinstance(r, dict) and r.get("error")]
            return int(doc["accepted"]), str(reasons[0]) if reasons else text
        if isinstance(doc, dict) and doc.get("detail"):
            text = str(doc["detail"])
        return (count if 200 <= status < 300 else 0), text

    def _report(self, text: str) -> None:
        """One line on stderr per streak of failures; never through ``logging`` (that would loop back here)."""
        if self._reported:
            return
        self._reported = True
        with contextlib.suppress(Exception):  # stderr may be closed at shutdown
            sys.stderr.write(f"logflow.handler: {text}\n")
