"""Many queue records of one key in one Kafka message, and back.

Every Kafka message costs the producer a ``produce`` call and a delivery report, the broker its
per-record validation, and the consumer a Message object with its accessor calls: for ~400-byte
log events that was ~5 µs of CPU per event, more than OpenSearch's bulk ceiling leaves for the
whole pipeline. So ``publish`` packs the records of one key (service), in order, into messages
of up to ``PACK_MAX_BYTES``; one key's records still go to one partition in order.

A pack is marked by the ``logflow-pack`` header (its value is the format version, ``1``):
record count as a little-endian uint32, that many uint32 lengths, then the records back to back.
A message without the header is one record, as every earlier version wrote them, so a topic
holding both is read correctly.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate, pairwise

from logflow.backends.queue.base import QueueRecord, new_tuple

PACK_HEADER = "logflow-pack"
PACK_VERSION = b"1"
# Far below the 1 MB message limits of producer and broker (a single record larger than this
# travels alone: up to about the ingest limit on event size, or 512 KiB for an event encoded as
# its OpenSearch document, see mapping.INDEXED_RECORD_MAX_BYTES), and large enough that
# per-message costs vanish: a pack holds ~450-600 typical events.
PACK_MAX_BYTES = 256 * 1024
_COUNT = struct.Struct("<I")
_LENGTHS_TYPE = "I"
_SWAP = sys.byteorder == "big"  # the lengths are little-endian on the wire, whatever the host
if array(_LENGTHS_TYPE).itemsize != 4:  # pragma: no cover - every platform CPython supports today
    raise ImportError("array('I') is not 32 bits wide here")


def packs(records: Sequence[QueueRecord], max_bytes: int = PACK_MAX_BYTES) -> Iterator[tuple[bytes, list[bytes]]]:
    """(key, values) groups in publish order per key: each group is one Kafka message."""
    by_key: dict[bytes, list[bytes]] = {}
    for key, value in records:
        group = by_key.get(key)
        if group is None:
            by_key[key] = [value]
        else:
            group.append(value)
    for key, values in by_key.items():
        start, size = 0, 0
        for i, value in enumerate(values):
            if size and size + len(value) > max_bytes:
                yield key, values[start:i]
                start, size = i, 0
            size += len(value) + 4
        yield key, values[start:]


def encode(values: list[bytes]) -> bytes:
    """One pack's message value."""
    lengths = array(_LENGTHS_TYPE, map(len, values))
    if _SWAP:
        lengths.byteswap()
    return _COUNT.pack(len(values)) + lengths.tobytes() + b"".join(values)


def decode(key: bytes, data: bytes) -> list[QueueRecord]:
    """The records of a pack. Raises ValueError if ``data`` is not a well-formed pack."""
    if len(data) < _COUNT.size:
        raise ValueError("pack shorter than its header")
    (count,) = _COUNT.unpack_from(data)
    body = _COUNT.size + 4 * count
    if len(data) < body:
        raise ValueError(f"pack of {count} records cut short in its length table")
    lengths = array(_LENGTHS_TYPE)
    lengths.frombytes(data[_COUNT.size : body])
    if _SWAP:
        lengths.byteswap()
    ends = list(accumulate(lengths, initial=body))
    if ends[-1] != len(data):
        raise ValueError(f"pack lengths add up to {ends[-1]} bytes, the message has {len(data)}")
    return [new_tuple(QueueRecord, (key, data[start:end])) for start, end in pairwise(ends)]
