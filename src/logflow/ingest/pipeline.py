"""The one ingest pipeline every protocol adapter calls: normalize, then publish durably.

Adapters (HTTP JSON, _bulk, OTLP, syslog, ...) only turn their wire format into DecodedItems
(or dicts). Limits, per-item results and backpressure live here, once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from logflow.backends.queue.base import EventQueue, QueueRecord
from logflow.domain.events import LogEvent
from logflow.ingest.decode import DecodedItem
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError, normalize


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
    """Per-item results of one batch plus the accepted events (already durable in the queue)."""

    results: list[ItemResult]
    events: list[LogEvent] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.events)

    @property
    def rejected(self) -> int:
        return len(self.results) - len(self.events)

    @property
    def http_status(self) -> int:
        """202 all accepted, 207 mixed, else the shared error code (422 when codes differ)."""
        if self.rejected == 0:
            return 202
        if self.accepted:
            return 207
        codes = {r.code for r in self.results}
        if len(codes) == 1:
            return codes.pop() or 422
        return 422

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "results": [r.to_json() for r in self.results],
        }


@dataclass(slots=True)
class IngestCounters:
    """Totals since start, for status pages."""

    accepted: int = 0
    rejected: int = 0
    batches: int = 0


class IngestPipeline:
    """Validate → normalize → durable queue. Thread-safe; one instance per process."""

    def __init__(self, queue: EventQueue, limits: IngestLimits) -> None:
        self.queue = queue
        self.limits = limits
        self.counters = IngestCounters()
        self._lock = threading.Lock()

    def submit(self, items: Sequence[DecodedItem]) -> IngestOutcome:
        """Normalize items and publish the valid ones; returns only once they are durable.

        Raises QueueFull, StorageFull or BackendUnavailable if the queue refuses the batch, in
        which case no item of it was accepted.
        """
        now_us = time.time_ns() // 1000
        results: list[ItemResult] = []
        events: list[LogEvent] = []
        for item in items:
            outcome: LogEvent | ItemError
            if item.error is not None:
                outcome = item.error
            else:
                outcome = normalize(item.value, now_us=now_us, limits=self.limits, flags=item.flags)
            if isinstance(outcome, ItemError):
                results.append(ItemResult(item.index, "rejected", code=outcome.code, error=outcome.reason,
                                          line=item.line))
            else:
                events.append(outcome)
                results.append(ItemResult(item.index, "accepted", id=outcome.id, line=item.line))
        if events:
            self.queue.publish([QueueRecord(*event.to_record()) for event in events])
        with self._lock:
            self.counters.batches += 1
            self.counters.accepted += len(events)
            self.counters.rejected += len(results) - len(events)
        return IngestOutcome(results=results, events=events)

    def submit_values(self, values: Iterable[object]) -> IngestOutcome:
        """Convenience for in-process producers (the demo generator): plain dicts, no decoding step."""
        return self.submit([DecodedItem(index=i, value=v) for i, v in enumerate(values)])
