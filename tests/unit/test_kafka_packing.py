"""Packing a key's queue records into Kafka messages and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logflow.backends.queue.base import QueueRecord
from logflow.backends.queue.kafka.packing import decode, encode, packs


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=50))
def test_a_pack_decodes_to_exactly_its_records(values: list[bytes]) -> None:
    assert decode(b"k", encode(values)) == [QueueRecord(b"k", v) for v in values]


def test_records_are_grouped_by_key_in_order_and_split_by_size() -> None:
    records = [QueueRecord(b"a" if i % 3 else b"b", b"%04d" % i + b"x" * 96) for i in range(30)]
    groups = list(packs(records, max_bytes=1000))
    by_key: dict[bytes, list[bytes]] = {}
    for key, values in groups:
        assert sum(len(v) + 4 for v in values) <= 1000 or len(values) == 1
        by_key.setdefault(key, []).extend(values)
    assert by_key == {k: [r.value for r in records if r.key == k] for k in (b"a", b"b")}
    assert [len(values) for key, values in groups if key == b"a"] == [9, 9, 2]  # 104 B each with its length


def test_a_record_over_the_limit_travels_alone() -> None:
    big, small = QueueRecord(b"k", b"B" * 5000), QueueRecord(b"k", b"s")
    assert list(packs([small, big, small], max_bytes=1000)) == [(b"k", [b"s"]), (b"k", [b"B" * 5000]), (b"k", [b"s"])]


@pytest.mark.parametrize("data", [b"", b"\x01\x00", b"\x02\x00\x00\x00\x01\x00\x00\x00", encode([b"ab", b"c"]) + b"!"])
def test_damaged_packs_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="pack"):
        decode(b"k", data)
