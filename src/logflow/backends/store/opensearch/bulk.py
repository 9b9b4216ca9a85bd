"""Idempotent bulk writes: ``create`` actions with ``_id`` = event id.

A batch is split into up to ``concurrency`` requests sent at the same time: the engine runs one
``_bulk`` request on one write thread per shard, so a single request at a time leaves the other
cores of a one-shard index idle.

Per item: 201 stored; 409 already there (a replay) -> duplicate; 429 or 5xx -> retried with
exponential backoff for a bounded time, then BackendUnavailable so that the processor keeps the
batch uncommitted; any other 4xx (mapping errors ...) -> Rejected, which goes to the dead letters.
A whole request that fails (unreachable, 5xx) raises BackendUnavailable at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.base import Rejected, WriteResult
from logflow.domain.events import LogEvent

from .client import ApiError, RestClient, error_reason
from .mapping import DAY_US, from_source, index_name, to_document
from .prepare import Tail, tail_of

# Bulk requests of a few MB are the engines' sweet spot; the default http.max_content_length
# (100 MB) is far away.
MAX_BULK_BYTES = 8 * 1024 * 1024
# Only what classifying the items needs: the full bulk answer is several times the size.
_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"


@dataclass(slots=True)
class _Item:
    index: str
    lines: bytes  # action line + document line, newline-terminated

    def event(self) -> LogEvent:
        """The event back from its document line (only refused events need it, for the dead letters)."""
        return from_source(orjson.loads(self.lines[self.lines.index(b"\n") + 1 :]))


# A request's items and their answers (None: every one of them created).
_Answered = tuple[list[_Item], list[dict[str, Any]] | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long refused-for-now items (429, 5xx) are retried before the write gives up."""

    budget_s: float = 30.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0


def _chunks(items: list[_Item], max_bytes: int) -> Iterator[list[_Item]]:
    chunk: list[_Item] = []
    size = 0
    for item in items:
        if chunk and size + len(item.lines) > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.lines)
    if chunk:
        yield chunk


class BulkWriter:
    """Writes batches of events into the daily indices of ``prefix``."""

    def __init__(self, client: RestClient, prefix: str, *, policy: RetryPolicy | None = None,
                 max_bytes: int = MAX_BULK_BYTES, concurrency: int = 2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._prefix = prefix
        self._policy = policy or RetryPolicy()
        self._max_bytes = max_bytes
        self._concurrency = max(1, concurrency)
        self._pool = ThreadPoolExecutor(self._concurrency, "bulk") if self._concurrency > 1 else None
        self._sleep = sleep
        self._heads: dict[int, tuple[str, bytes]] = {}

    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        """Store ``events`` in bulk requests of at most ``max_bytes``; see the module docstring."""
        return self.write_tails([(event.timestamp // DAY_US, tail_of(to_document(event))) for event in events])

    def write_tails(self, tails: Sequence[Tail]) -> WriteResult:
        """Store (day, tail) pairs as ``prepare.prepare_payloads`` makes them; same guarantees as ``write``."""
        heads = self._heads
        todo = []
        for day, tail in tails:
            head = heads.get(day)
            if head is None:
                index = index_name(self._prefix, day)
                head = heads[day] = (index, b'{"create":{"_index":' + orjson.dumps(index) + b",")
            todo.append(_Item(head[0], head[1] + tail))
        return self._write(todo)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _write(self, todo: list[_Item]) -> WriteResult:
        result = WriteResult()
        total = len(todo)
        deadline = time.monotonic() + self._policy.budget_s
        delay = self._policy.first_delay_s
        while todo:
            retry: list[_Item] = []
            last_reason = ""
            missing: set[str] = set()
            for chunk, answers in self._send_all(todo):
                if answers is None:
                    result.stored += len(chunk)
                    continue
                for item, answer in zip(chunk, answers, strict=True):
                    status = int(answer.get("status", 0))
                    if status in (200, 201):
                        result.stored += 1
                    elif status == 409:
                        result.duplicates += 1
                    elif status == 429 or status >= 500 or _index_missing(answer):
                        retry.append(item)
                        last_reason = f"{status} {error_reason(answer)}"
                        if _index_missing(answer):
                            missing.add(item.index)
                    else:
                        reason = f"store refused the event: {error_reason(answer)}"
                        result.rejected.append(Rejected(item.event(), reason))
            for index in sorted(missing):
                self._create_index(index)
            if retry and time.monotonic() + delay > deadline:
                # Whatever was stored is safe: the processor's replay counts it as duplicates.
                raise BackendUnavailable(
                    f"{len(retry)} of {total} events still refused after {self._policy.budget_s:g}s "
                    f"of retries (last: {last_reason})"
                )
            if retry:
                self._sleep(delay)
                delay = min(delay * 2, self._policy.max_delay_s)
            todo = retry
        return result

    def _send_all(self, todo: list[_Item]) -> list[_Answered]:
        """Every item with its answer: requests of at most max_bytes, up to ``concurrency`` at once."""
        size = sum(len(item.lines) for item in todo)
        target = min(self._max_bytes, -(-size // self._concurrency))
        chunks = list(_chunks(todo, target))
        if self._pool is None or len(chunks) == 1:
            return [answered for chunk in chunks for answered in self._send(chunk)]
        return [answered for part in self._pool.map(self._send, chunks) for answered in part]

    def _send(self, chunk: list[_Item]) -> list[_Answered]:
        """One _bulk request: the chunk with its items' answers (None when every item was created).

        A cluster whose http.max_content_length is below our chunk size answers 413: the chunk is
        halved until it passes; one event that is still too large is refused for good.
        """
        body = b"".join(item.lines for item in chunk)
        try:
            answer = self._client.request("POST", "/_bulk", ndjson=body, params={"filter_path": _FILTER})
        except ApiError as exc:
            if exc.status != 413:
                raise
            if len(chunk) == 1:
                return [(chunk, [{"status": 413, "error": {"type": "too_large", "reason": exc.reason}}])]
            half = len(chunk) // 2
            return self._send(chunk[:half]) + self._send(chunk[half:])
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != len(chunk):
            raise BackendUnavailable(f"unexpected _bulk answer: {str(answer)[:300]}")
        if answer.get("errors") is False:
            return [(chunk, None)]  # the usual case: no item needs a look
        # Each item is {"create": {...}}: the action name wraps the answer.
        return [(chunk, [next(iter(item.values())) if isinstance(item, dict) and item else {} for item in items])]

    def _create_index(self, index: str) -> None:
        # Clusters that restrict action.auto_create_index refuse to create daily indices on the
        # fly; creating one explicitly still applies our template.
        self._client.request("PUT", f"/{index}", allow=(400,))


def _index_missing(answer: dict[str, Any]) -> bool:
    error = answer.get("error")
    return isinstance(error, dict) and error.get("type") == "index_not_found_exception"
