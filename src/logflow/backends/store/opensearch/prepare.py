"""The CPU-bound half of an OpenSearch write, as a pure function of the queue payloads.

Turning queue payloads into ``_bulk`` lines (decode, build the document, encode it) needs nothing
from the cluster, so the processor runs ``prepare_payloads`` for the next batch while the current
one is being indexed (see ingest/processor.py). Straight from the queue's wire form, without
LogEvent objects: the queue body is what ``mapping.document`` takes, so the lines are byte for
byte what ``to_document`` gives (tests/unit/test_opensearch_prepare.py).

A payload in wire format 3 (what the API writes when the store is OpenSearch, see
``mapping.encode_indexed_record``) already holds the document: its lines are copied together
from the payload's bytes, with no JSON decoding or encoding.

Each event becomes two lines, ``{"create":{"_id":…}}`` and its document, with no index name: the
writer posts a day's lines to ``/<prefix>-<day>/_bulk`` (the index prefix is the store's setting,
and a preparer knows no settings). The lines of one UTC day are joined into one block, with the
end offset of each event's lines, so the writer cuts requests at event boundaries and looks at
single events only when the engine refused some (see bulk.py).

Within a day the events are ordered by id. Ids are ULIDs of the event time unless the sender gave
its own, and a batch from Kafka interleaves partitions (and concurrent senders), so in queue order
every request spans the batch's whole range of ids. OpenSearch looks each ``create`` id up in every
segment whose id range covers it: requests in id order leave segments with narrow ranges. A
plain-client ceiling sent in time order, shuffled, and shuffled then sorted within 10,000 events
took 25.0-26.6, 22.4-23.5 and 24.1-25.3 k events/s (BENCHMARKS.md, seventh session). The sort is
stable: of two events with one id in the same request, the first queued still wins (the sort puts
them side by side, so they nearly always share a request).
"""

from __future__ import annotations

from itertools import accumulate
from operator import itemgetter
from typing import Any

import orjson

from logflow.backends.store.base import PreparedBatch
from logflow.domain.events import WIRE_3, WIRE_ERRORS, check_wire_fields, read_document_record, read_wire

from .mapping import DAY_US, document

# (UTC day number, the lines of that day's events joined, the end offset of each event's lines).
# Plain values: they may cross from a helper process by marshal.
DayBlock = tuple[int, bytes, list[int]]
_FORMAT_3 = bytes([WIRE_3])


def event_lines(doc: dict[str, Any]) -> bytes:
    """An event's action line (without an index) and document line, newline-terminated."""
    return b'{"create":{"_id":' + orjson.dumps(doc["id"]) + b"}}\n" + orjson.dumps(doc) + b"\n"


# An event's id (what the day's lines are ordered by) and its lines.
KeyedLines = tuple[bytes, bytes]


def day_blocks(days: dict[int, list[KeyedLines]]) -> list[DayBlock]:
    """Each day's event lines, in id order, as one block with the end offset of every event in it."""
    blocks: list[DayBlock] = []
    for day, keyed in days.items():
        keyed.sort(key=itemgetter(0))
        lines = [event for _, event in keyed]
        blocks.append((day, b"".join(lines), list(accumulate(map(len, lines)))))
    return blocks


def prepare_payloads(payloads: list[bytes]) -> PreparedBatch:
    """Queue payloads → (undecodable, [DayBlock]); events in id order within a day."""
    days: dict[int, list[KeyedLines]] = {}
    undecodable: list[tuple[int, str]] = []
    for index, payload in enumerate(payloads):
        try:
            if payload[:1] == _FORMAT_3:
                # Already our document (the API's encoder): copied, no JSON work.
                ts, event_id, document_json = read_document_record(payload)
                keyed = (event_id, b'{"create":{"_id":"' + event_id + b'"}}\n' + document_json + b"\n")
            else:
                ts, level, service, body, _ = read_wire(payload)
                check_wire_fields(ts, service, body, payload)
                keyed = (body["i"].encode(), event_lines(document(ts, level, service, body)))
        except WIRE_ERRORS as exc:
            undecodable.append((index, f"undecodable queue payload: {exc}"))
            continue
        day = ts // DAY_US
        group = days.get(day)
        if group is None:
            group = days[day] = []
        group.append(keyed)
    return PreparedBatch(undecodable=undecodable, data=day_blocks(days))
