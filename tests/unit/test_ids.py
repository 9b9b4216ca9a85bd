"""ULIDs: made by table lookup, read back by ulid_ms (the embedded store finds events by it)."""

from __future__ import annotations

import os
import random
import re
import threading

import pytest

from logflow.domain.ids import new_ulid, ulid_ms

_ULID_SHAPE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


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


def test_given_entropy_encodes_exactly_as_the_ulid_specification() -> None:
    # The reference: 128 bits, most significant first, 5 bits per Crockford character.
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    rng = random.Random(11)
    for _ in range(500):
        ms, entropy = rng.randrange(2**48), rng.randbytes(10)
        value = ms << 80 | int.from_bytes(entropy, "big")
        expected = "".join(alphabet[(value >> (5 * i)) & 31] for i in range(25, -1, -1))
        assert new_ulid(ms, entropy) == expected


def test_random_parts_are_unique_across_threads_and_pool_refills() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def make() -> None:
        ids = [new_ulid(1) for _ in range(3_000)]  # three pool refills per thread
        with lock:
            made.extend(ids)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 12_000
    assert all(_ULID_SHAPE.fullmatch(i) for i in made)


def test_a_forked_child_does_not_repeat_its_parents_random_parts() -> None:
    new_ulid(1)  # the parent's pool now holds ids a child would otherwise inherit
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave without running the test harness
        os.write(write_end, ",".join(new_ulid(1) for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = set(pipe.read().split(","))
    os.waitpid(pid, 0)
    parent = {new_ulid(1) for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
