"""The CPU-bound half of an OpenSearch write, as a pure function another process can run.

Turning queue payloads into ``_bulk`` lines (decode, build the document, encode it) needs nothing
from the cluster, so the processor runs ``prepare_payloads`` for the next batch in a helper
process while the current batch is being indexed (see ingest/processor.py). Straight from the
queue's wire form, without LogEvent objects: the queue body is what ``mapping.document`` takes,
so the lines are byte for byte what ``to_document`` gives (tests/unit/test_opensearch_prepare.py).

The index prefix is the store's setting and the helper knows no settings: each event comes back
as (UTC day, the rest of its action line and its document line), and the writer puts the
``{"create":{"_index":"<prefix>-<day>",`` head in front.
"""

from __future__ import annotations

from typing import Any

import orjson

from logflow.backends.store.base import PreparedBatch
from logflow.domain.events import WIRE_ERRORS, read_wire

from .mapping import DAY_US, document

# (UTC day number, b'"_id":"…"}}\n{document}\n'). A plain tuple: it crosses from the helper by marshal.
Tail = tuple[int, bytes]


def tail_of(doc: dict[str, Any]) -> bytes:
    """The rest of a document's action line after the index name, and the document line."""
    return b'"_id":' + orjson.dumps(doc["id"]) + b"}}\n" + orjson.dumps(doc) + b"\n"


def prepare_payloads(payloads: list[bytes]) -> PreparedBatch:
    """Queue payloads → (undecodable, [(day, action tail + document line)]) in payload order."""
    tails: list[Tail] = []
    undecodable: list[tuple[int, str]] = []
    for index, payload in enumerate(payloads):
        try:
            ts, level, service, body, _ = read_wire(payload)
            tails.append((ts // DAY_US, tail_of(document(ts, level, service, body))))
        except WIRE_ERRORS as exc:
            undecodable.append((index, f"undecodable queue payload: {exc}"))
    return PreparedBatch(undecodable=undecodable, data=tails)
