"""The one ingest pipeline every protocol adapter calls: normalize, then publish durably.

Adapters (HTTP JSON, _bulk, OTLP, syslog, ...) only turn their wire format into DecodedItems
(or dicts). Limits, per-item results and backpressure live here, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from logflow.backends.queue.base import EventQueue, QueueRecord, new_tuple
from logflow.domain.events import RecordEncoder, encode_record
from logflow.ingest.decode import DecodedItem
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError, normalize_into


@dataclass(slots=True)
class ItemResult:
    """The fate of one item: ``accepted`` with its event id, or ``rejected`` with code and reason."""

    index: int
    status: str
    id: str | None = None
    code: int | None = None
    error: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            out["id"] = self.id
        if self.code is not None:
            out["code"] = self.code
            out["error"] = self.error
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass(slots=True)
class IngestOutcome:
    """The fate of every item of one batch; the accepted ones are already durable in the queue.

    Kept as the items, each one's event id (None when rejected) and the rejections by position:
    an accepted item costs no result object of its own (this is made for every ingested event).
    """

    items: Sequence[DecodedItem]
    ids: list[str | None]
    errors: dict[int, ItemError]

    @property
    def accepted(self) -> int:
        return len(self.items) - len(self.errors)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    @property
    def results(self) -> list[ItemResult]:
        """One ItemResult per item, in order (built on each access: read it once per answer)."""
        errors = self.errors
        out: list[ItemResult] = []
        for position, (item, event_id) in enumerate(zip(self.items, self.ids, strict=True)):
            error = errors.get(position)
            if error is None:
                out.append(ItemResult(item.index, "accepted", event_id, None, None, item.line))
            else:
                out.append(ItemResult(item.index, "rejected", None, error.code, error.reason, item.line))
        return out

    @property
    def http_status(self) -> int:
        """202 all accepted, 207 mixed, else the shared error code (422 when codes differ)."""
        if not self.errors:
            return 202
        if self.accepted:
            return 207
        codes = {error.code for error in self.errors.values()}
        if len(codes) == 1:
            return codes.pop() or 422
        return 422

    def to_json(self) -> dict[str, Any]:
        """The native answer: counts, then each item as ItemResult.to_json shapes it."""
        if self.errors:
            results = [result.to_json() for result in self.results]
        else:  # every item accepted, the usual answer: its dicts made here directly
            results = [
                {"index": item.index, "status": "accepted", "id": event_id}
                if item.line is None
                else {"index": item.index, "status": "accepted", "id": event_id, "line": item.line}
                for item, event_id in zip(self.items, self.ids, strict=True)
            ]
        return {"accepted": self.accepted, "rejected": self.rejected, "results": results}


@dataclass(slots=True)
class IngestCounters:
    """Totals since start, for status pages."""

    accepted: int = 0
    rejected: int = 0
    batches: int = 0


class IngestPipeline:
    """Validate → normalize → durable queue. Thread-safe; one instance per process."""

    def __init__(self, queue: EventQueue, limits: IngestLimits, encoder: RecordEncoder = encode_record) -> None:
        self.queue = queue
        self.limits = limits
        # How events go on the queue: the wire form every store reads, or the store's own
        # document form when the store asks for it (see DocumentEncodingStore).
        self.encoder = encoder
        self.counters = IngestCounters()
        self._lock = threading.Lock()

    def submit(self, items: Sequence[DecodedItem]) -> IngestOutcome:
        """Normalize items and publish the valid ones; returns only once they are durable.

        Raises QueueFull, StorageFull or BackendUnavailable if the queue refuses the batch, in
        which case no item of it was accepted.
        """
        now_us = time.time_ns() // 1000
        limits, encoder = self.limits, self.encoder
        ids: list[str | None] = []
        errors: dict[int, ItemError] = {}
        records: list[QueueRecord] = []
        for position, item in enumerate(items):
            outcome: tuple[str, bytes, bytes] | ItemError
            if item.error is not None:
                outcome = item.error
            else:
                # Straight to the queue's wire form: no LogEvent is made on the way (once per event).
                outcome = normalize_into(encoder, item.value, now_us=now_us, limits=limits, flags=item.flags)
            if type(outcome) is ItemError:
                errors[position] = outcome
                ids.append(None)
            else:
                ids.append(outcome[0])  # type: ignore[index]  # not an ItemError, see above
                records.append(new_tuple(QueueRecord, outcome[1:]))  # type: ignore[index]
        if records:
            self.queue.publish(records)
        with self._lock:
            self.counters.batches += 1
            self.counters.accepted += len(records)
            self.counters.rejected += len(errors)
        return IngestOutcome(items, ids, errors)

    def submit_values(self, values: Iterable[object]) -> IngestOutcome:
        """Convenience for in-process producers (the demo generator): plain dicts, no decoding step."""
        return self.submit([DecodedItem(index=i, value=v) for i, v in enumerate(values)])
