"""Idempotent bulk writes: ``create`` actions with ``_id`` = event id.

A batch arrives as blocks of one day's event lines (see prepare.py) and is cut, at event
boundaries, into about ``concurrency`` requests sent at the same time (more when a block is over
``max_bytes``): the engine runs one ``_bulk`` request on one write thread per shard, so a single
request at a time leaves the other cores of a one-shard index idle. Each request goes to its
day's index, ``/<index>/_bulk``.

Per item: 201 stored; 409 already there (a replay) -> duplicate; 429 or 5xx -> retried with
exponential backoff for a bounded time, then BackendUnavailable so that the processor keeps the
batch uncommitted; any other 4xx (mapping errors ...) -> Rejected, which goes to the dead letters.
A whole request that fails (unreachable, 5xx) raises BackendUnavailable at once. Single events
are looked at only when the engine answered ``errors: true``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any

import orjson

from logflow.backends.errors import BackendUnavailable
from logflow.backends.store.base import Rejected, WriteResult
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level

from .client import ApiError, RestClient, error_reason
from .mapping import DAY_US, from_source, index_name, to_document
from .prepare import DayBlock, KeyedLines, day_blocks, event_lines

# The flag of a dead letter whose document could not be read back into an event (see _Chunk.event).
UNREADABLE_FLAG = "unreadable_document"

# Bulk requests of a few MB are the engines' sweet spot; the default http.max_content_length
# (100 MB) is far away.
MAX_BULK_BYTES = 8 * 1024 * 1024
# Only what classifying the items needs: the full bulk answer is several times the size.
_FILTER = "errors,items.*.status,items.*.error.type,items.*.error.reason"
# What the engine answers (400) when one item makes it refuse the whole request.
_INVALID_ITEM = "action_request_validation_exception"
# How an answer in which every item was created begins (filter_path keeps the engine's key order).
_ALL_CREATED = b'{"errors":false,'


@dataclass(slots=True)
class _Chunk:
    """Events ``first`` to ``stop - 1`` of a block of event lines.

    The block's events belong to ``index``, posted to ``/<index>/_bulk``; or, when ``indices``
    is set, each event to its own index, named in its action line, posted to ``/_bulk``.
    """

    index: str
    block: bytes
    ends: list[int]  # the end offset of each event's lines in block
    first: int
    stop: int
    indices: list[str] | None = None

    def index_of(self, event: int) -> str:
        return self.index if self.indices is None else self.indices[event]

    def __len__(self) -> int:
        return self.stop - self.first

    @property
    def size(self) -> int:
        """The bytes of this chunk's lines."""
        return self.ends[self.stop - 1] - self._start(self.first)

    def _start(self, event: int) -> int:
        return self.ends[event - 1] if event else 0

    def body(self) -> bytes:
        if self.first == 0 and self.stop == len(self.ends):
            return self.block
        return self.block[self._start(self.first) : self.ends[self.stop - 1]]

    def lines(self, event: int) -> bytes:
        """The action and document lines of one event (an index into the whole block)."""
        return self.block[self._start(event) : self.ends[event]]

    def event(self, event: int) -> LogEvent:
        """The event back from its document line (only refused events need it, for the dead letters)."""
        lines = self.lines(event)
        action, document = lines.split(b"\n", 1)
        try:
            return from_source(orjson.loads(document))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Not a document our encoder wrote (a format-3 payload from another writer on the
            # topic): its bytes go to the dead letters as the message, and the processor goes on.
            event_id = orjson.loads(action)["create"]["_id"]
            return LogEvent(id=event_id, timestamp=0, level=Level.ERROR, service="unknown",
                            message=document.rstrip(b"\n").decode(errors="replace"), flags=[UNREADABLE_FLAG])

    def split(self, parts: int) -> list[_Chunk]:
        """About ``parts`` chunks of about equal size, cut at event boundaries (none empty)."""
        if parts <= 1 or len(self) <= 1:
            return [self]
        base, size = self._start(self.first), self.size
        bounds = [self.first]
        for part in range(1, parts):
            # The first event whose lines end at or past this part's share ends the part.
            cut = bisect_left(self.ends, base + size * part // parts, bounds[-1], self.stop - 1) + 1
            if bounds[-1] < cut < self.stop:
                bounds.append(cut)
        bounds.append(self.stop)
        return [self._part(a, b) for a, b in pairwise(bounds)]

    def halves(self) -> tuple[_Chunk, _Chunk]:
        """The first and second half of the events (at least two): whatever their sizes."""
        middle = self.first + len(self) // 2
        return self._part(self.first, middle), self._part(middle, self.stop)

    def _part(self, first: int, stop: int) -> _Chunk:
        return _Chunk(self.index, self.block, self.ends, first, stop, self.indices)


def _whole(index: str, block: bytes, ends: list[int]) -> _Chunk:
    return _Chunk(index, block, ends, 0, len(ends))


def _joined(index: str, lines: list[bytes]) -> _Chunk:
    """A chunk of single events' lines (the ones a write retries)."""
    return _whole(index, b"".join(lines), list(accumulate(map(len, lines))))


_ACTION = b'{"create":{"_id":'


def _merged(chunks: list[_Chunk]) -> _Chunk:
    """The events of several indices' chunks as one chunk whose action lines name their index.

    For a batch that spans more days than there are concurrent requests (a backfill): without
    it, each day would be a request of its own, however few events it has. Event by event, as
    this is the rare path: a line that names its index already (a retried one) is kept as it is.
    """
    parts: list[bytes] = []
    indices: list[str] = []
    for chunk in chunks:
        for event in range(chunk.first, chunk.stop):
            index, lines = chunk.index_of(event), chunk.lines(event)
            if lines.startswith(_ACTION):
                lines = b'{"create":{"_index":' + orjson.dumps(index) + b',"_id":' + lines[len(_ACTION) :]
            parts.append(lines)
            indices.append(index)
    merged = _joined("", parts)
    merged.indices = indices
    return merged


# A request's chunk and its items' answers (None: every one of them created).
_Answered = tuple[_Chunk, list[dict[str, Any]] | None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long refused-for-now items (429, 5xx) are retried before the write gives up."""

    budget_s: float = 30.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0


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
        self._indices: dict[int, str] = {}

    def write(self, events: Sequence[LogEvent]) -> WriteResult:
        """Store ``events`` in bulk requests of at most ``max_bytes``; see the module docstring."""
        days: dict[int, list[KeyedLines]] = {}
        for event in events:
            days.setdefault(event.timestamp // DAY_US, []).append((event.id.encode(), event_lines(to_document(event))))
        return self.write_blocks(day_blocks(days))

    def write_blocks(self, blocks: Sequence[DayBlock]) -> WriteResult:
        """Store day blocks as ``prepare.prepare_payloads`` makes them; same guarantees as ``write``."""
        return self._write([_whole(self._index(day), block, ends) for day, block, ends in blocks])

    def _index(self, day: int) -> str:
        index = self._indices.get(day)
        if index is None:
            index = self._indices[day] = index_name(self._prefix, day)
        return index

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _write(self, todo: list[_Chunk]) -> WriteResult:
        result = WriteResult()
        total = sum(len(chunk) for chunk in todo)
        deadline = time.monotonic() + self._policy.budget_s
        delay = self._policy.first_delay_s
        while todo:
            retry: dict[str, list[bytes]] = {}
            last_reason = ""
            missing: set[str] = set()
            for chunk, answers in self._send_all(todo):
                if answers is None:
                    result.stored += len(chunk)
                    continue
                for event, answer in zip(range(chunk.first, chunk.stop), answers, strict=True):
                    status = int(answer.get("status", 0))
                    if status in (200, 201):
                        result.stored += 1
                    elif status == 409:
                        result.duplicates += 1
                    elif status == 429 or status >= 500 or _index_missing(answer):
                        # Retried by index, to /<index>/_bulk (an action line naming it still may).
                        index = chunk.index_of(event)
                        retry.setdefault(index, []).append(chunk.lines(event))
                        last_reason = f"{status} {error_reason(answer)}"
                        if _index_missing(answer):
                            missing.add(index)
                    else:
                        reason = f"store refused the event: {error_reason(answer)}"
                        result.rejected.append(Rejected(chunk.event(event), reason))
            for index in sorted(missing):
                self._create_index(index)
            waiting = sum(len(lines) for lines in retry.values())
            if waiting and time.monotonic() + delay > deadline:
                # Whatever was stored is safe: the processor's replay counts it as duplicates.
                raise BackendUnavailable(
                    f"{waiting} of {total} events still refused after {self._policy.budget_s:g}s "
                    f"of retries (last: {last_reason})"
                )
            if waiting:
                self._sleep(delay)
                delay = min(delay * 2, self._policy.max_delay_s)
            todo = [_joined(index, lines) for index, lines in retry.items()]
        return result

    def _send_all(self, todo: list[_Chunk]) -> list[_Answered]:
        """Every chunk with its answers: requests of about max_bytes or less, up to ``concurrency`` at once."""
        if len(todo) > self._concurrency:
            todo = [_merged(todo)]
        total = sum(chunk.size for chunk in todo)
        chunks: list[_Chunk] = []
        for chunk in todo:
            # Its share of the concurrent requests, and no request over max_bytes (but by one event).
            share = -(-self._concurrency * chunk.size // total)
            chunks += chunk.split(max(share, -(-chunk.size // self._max_bytes)))
        if self._pool is None or len(chunks) == 1:
            return [answered for chunk in chunks for answered in self._send(chunk)]
        return [answered for part in self._pool.map(self._send, chunks) for answered in part]

    def _send(self, chunk: _Chunk) -> list[_Answered]:
        """One _bulk request: the chunk with its items' answers (None when every item was created).

        A cluster whose http.max_content_length is below our chunk size answers 413: the chunk is
        halved until it passes; one event that is still too large is refused for good. A request
        the engine refuses whole because one of its items is invalid (400
        ``action_request_validation_exception``, e.g. an ``_id`` over 512 bytes) is halved the
        same way, down to the event at fault.
        """
        path = "/_bulk" if chunk.indices is not None else f"/{chunk.index}/_bulk"
        try:
            raw: bytes = self._client.request("POST", path, ndjson=chunk.body(), params={"filter_path": _FILTER},
                                              decode=False)
        except ApiError as exc:
            refused_whole = exc.status == 400 and exc.reason.startswith(_INVALID_ITEM)
            if exc.status != 413 and not refused_whole:
                raise
            if len(chunk) == 1:
                kind = "invalid" if refused_whole else "too_large"
                return [(chunk, [{"status": exc.status, "error": {"type": kind, "reason": exc.reason}}])]
            return [answered for half in chunk.halves() for answered in self._send(half)]
        # The usual answer, every item created, is read without decoding its thousands of items.
        if raw.startswith(_ALL_CREATED) and raw.count(b'"status":') == len(chunk):
            return [(chunk, None)]
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = raw[:300]
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != len(chunk):
            raise BackendUnavailable(f"unexpected _bulk answer: {str(answer)[:300]}")
        if answer.get("errors") is False:
            return [(chunk, None)]
        # Each item is {"create": {...}}: the action name wraps the answer.
        return [(chunk, [next(iter(item.values())) if isinstance(item, dict) and item else {} for item in items])]

    def _create_index(self, index: str) -> None:
        # Clusters that restrict action.auto_create_index refuse to create daily indices on the
        # fly; creating one explicitly still applies our template.
        self._client.request("PUT", f"/{index}", allow=(400,))


def _index_missing(answer: dict[str, Any]) -> bool:
    error = answer.get("error")
    return isinstance(error, dict) and error.get("type") == "index_not_found_exception"
