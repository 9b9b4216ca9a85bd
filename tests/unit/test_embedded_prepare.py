"""Preparing embedded writes straight from queue payloads gives what preparing LogEvents gives."""

from __future__ import annotations

import struct

import orjson
import pytest

from logflow.backends.store.embedded.prepare import documents_of, prepare_events, prepare_payloads
from logflow.domain.events import LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import Level
from tests.conftest import loghub_rows

DAY_US = 86_400_000_000
BASE_US = 1_780_000_000_000_000  # a fixed day, so the test does not depend on the clock


def loghub_events(system: str, count: int) -> list[LogEvent]:
    rows = loghub_rows(system)
    events = []
    for i in range(count):
        row = rows[i % len(rows)]
        ts = BASE_US + i * 7_000_000_000  # 7 s apart: 1,000 events span two days
        events.append(LogEvent(
            id=new_ulid(ts // 1000) if i % 5 else f"client-id-{i}", timestamp=ts, level=list(Level)[i % len(Level)],
            service=system.lower(), message=row["Content"], host=None if i % 4 == 0 else f"node-{i % 7}",
            trace_id=f"t{i}" if i % 3 == 0 else None, attributes={"event_id": row["EventId"], "n": i},
            flags=["invalid_utf8"] if i % 50 == 0 else [],
        ))
    return events


def test_payloads_prepare_like_events_across_days_levels_and_ids() -> None:
    events = loghub_events("Hadoop", 1000) + loghub_events("Spark", 300)
    prepared = prepare_payloads([e.to_wire() for e in events])
    assert prepared.undecodable == []
    assert prepared.data == prepare_events(events)
    assert [day for day, _, _ in prepared.data] == sorted({e.timestamp // DAY_US for e in events})
    assert sum(len(day_items) for _, day_items, _ in prepared.data) == 1300


def test_older_and_unusual_payloads_are_encoded_again_as_one_line() -> None:
    event = LogEvent(id="x1", timestamp=BASE_US, level=Level.ERROR, service="api", message="disk full",
                     host="h", attributes={"path": "/var"})
    format_1 = event.to_json()  # what versions before wire format 2 queued
    header = struct.pack("<BqBH", 2, BASE_US + 1, int(Level.INFO), 3) + b"api"
    newline_body = header + b'{"i":"x2",\n "m":"two\\nlines"}'  # JSON whitespace holding a raw newline
    prepared = prepare_payloads([format_1, newline_body])
    assert prepared.undecodable == []
    (day,) = prepared.data
    documents = documents_of(day[2])
    assert [orjson.loads(d) for d in documents] == [event.body(), {"i": "x2", "m": "two\nlines"}]
    assert all(b"\n" not in d for d in documents)
    assert [item[0] for item in day[1]] == ["x1", "x2"]


# Payloads every store's preparation must report as undecodable, with a word of the reason.
DAMAGED_PAYLOADS = [
    (struct.pack("<BqBH", 2, BASE_US, 2, 1) + b"s" + b'["not", "an", "object"]', "not an object"),
    (struct.pack("<BqBH", 2, BASE_US, 77, 1) + b"s" + b'{"i":"a","m":"m"}', "77"),
    (struct.pack("<BqBH", 2, BASE_US, 2, 1) + b"s" + b'{"m":"no id"}', "'i'"),
    (b"\x09" + b"garbage" * 3, "unknown queue wire format 9"),
    (b"\x02", "unpack"),
]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(struct.pack("<BqBH", 2, BASE_US, 2, 1) + b"s" + b'{"i":"a","m":42}', "'m' (message) is int, not str"),
     *DAMAGED_PAYLOADS],
)
def test_damaged_payloads_are_reported_and_the_rest_prepared(payload: bytes, reason: str) -> None:
    good = LogEvent(id="ok", timestamp=BASE_US, level=Level.INFO, service="s", message="fine")
    prepared = prepare_payloads([good.to_wire(), payload, good.to_wire()])
    assert [index for index, _ in prepared.undecodable] == [1]
    assert reason in prepared.undecodable[0][1] and prepared.undecodable[0][1].startswith("undecodable queue payload")
    (day,) = prepared.data
    assert [item[0] for item in day[1]] == ["ok", "ok"]  # duplicates are the writer's business
