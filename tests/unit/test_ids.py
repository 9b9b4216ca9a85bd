"""ULIDs: made by table lookup, read back by ulid_ms (the embedded store finds events by it)."""

from __future__ import annotations

import random

import pytest

from logflow.domain.ids import new_ulid, ulid_ms


def test_the_millisecond_reads_back_across_the_whole_48_bit_range() -> None:
    rng = random.Random(7)
    for ms in [0, 1, 2**48 - 1, *(rng.randrange(2**48) for _ in range(2_000))]:
        made = new_ulid(ms, rng.randbytes(10))
        assert len(made) == 26
        assert ulid_ms(made) == ms


def test_ids_sort_in_time_order() -> None:
    made = [new_ulid(ms) for ms in (5, 1_764_000_000_000, 1_764_000_000_001, 2**47)]
    assert sorted(made) == made


@pytest.mark.parametrize("text", [
    "", "order-77", "01KAV9FT3VW08TVCCGQY6JJQQ",  # 25 characters
    "01kav9ft3vw08tvccgqy6jjqqg",  # lower case: not what LogFlow writes
    "81KAV9FT3VW08TVCCGQY6JJQQG",  # first character above 7: more than 48 bits of time
    "01KAV9FT3VW08TVCCGQY6JJQQI", "01KAV9FT3VW08TVCCGQY6JJQQU",  # letters Crockford leaves out
    "00000000-0000-0000-0000-000000000042",
])
def test_anything_else_is_not_a_ulid(text: str) -> None:
    assert ulid_ms(text) is None
