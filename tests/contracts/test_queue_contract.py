"""What every EventQueue must do, written against the Protocol only.

Implementations come from the ``queue_factory`` fixture. Order is only promised per key (Kafka
keeps it per partition), so the tests compare per-key sequences and the overall multiset.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

from logflow.backends.errors import QueueFull
from logflow.backends.queue.base import (
    ConsumedBatch,
    DeadLetter,
    DeadLetterBatch,
    DeadLetterCursor,
    EventQueue,
    QueueConsumer,
    QueueRecord,
)

QueueFactory = Callable[..., EventQueue]


def drain(consumer: QueueConsumer, count: int, timeout_s: float = 10.0) -> list[ConsumedBatch]:
    """Poll until ``count`` records came (failing after ``timeout_s``), then check nothing more is there."""
    batches: list[ConsumedBatch] = []
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < count:
        assert time.monotonic() < deadline, f"only {got} of {count} records arrived"
        batch = consumer.poll(1000, 0.5)
        if batch is not None:
            batches.append(batch)
            got += len(batch.records)
    assert got == count, f"{got - count} records more than published"
    return batches


def records_of(batches: list[ConsumedBatch]) -> list[QueueRecord]:
    return [record for batch in batches for record in batch.records]


def by_key(records: list[QueueRecord]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for record in records:
        grouped[record.key].append(record.value)
    return dict(grouped)


def numbered(key: bytes, start: int, count: int) -> list[QueueRecord]:
    return [QueueRecord(key, b"%s-%06d" % (key, i)) for i in range(start, start + count)]


def test_round_trip_preserves_bytes_and_per_key_order(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    published = [
        *numbered(b"api", 0, 300),
        QueueRecord(b"bin", bytes(range(256)) * 4),
        QueueRecord(b"empty", b""),
        QueueRecord(b"big", b"B" * 200_000),
        QueueRecord("sérvice".encode(), "ünïcode ✓".encode()),
        *numbered(b"worker", 0, 300),
    ]
    queue.publish(published[:150])
    queue.publish(published[150:])
    received = records_of(drain(queue.consumer("processors"), len(published)))
    assert by_key(received) == by_key(published)
    assert Counter(received) == Counter(published)


def test_every_group_gets_every_record(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    published = numbered(b"k", 0, 50)
    queue.publish(published)
    assert records_of(drain(queue.consumer("indexer"), 50)) == published
    assert records_of(drain(queue.consumer("alerts"), 50)) == published


def test_poll_waits_for_records_published_meanwhile(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    consumer = queue.consumer("g")
    assert consumer.poll(10, 0.05) is None
    later = numbered(b"k", 0, 3)
    publisher = threading.Timer(0.2, queue.publish, args=(later,))
    publisher.start()
    try:
        batch = consumer.poll(10, 10.0)
    finally:
        publisher.join()
    assert batch is not None
    assert batch.records == later[: len(batch.records)]


def test_uncommitted_records_go_to_the_next_consumer(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    published = numbered(b"k", 0, 40)
    queue.publish(published)
    first = queue.consumer("g")
    assert records_of(drain(first, 40)) == published
    first.close()  # crashed or stopped before committing
    assert records_of(drain(queue.consumer("g"), 40)) == published


def test_rewind_redelivers_only_what_was_not_committed(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    queue.publish(numbered(b"k", 0, 30))
    consumer = queue.consumer("g")
    consumer.commit(drain(consumer, 30)[-1])
    later = numbered(b"k", 30, 20)
    queue.publish(later)
    assert records_of(drain(consumer, 20)) == later
    consumer.rewind()
    assert records_of(drain(consumer, 20)) == later
    assert consumer.poll(100, 0.2) is None


def test_committed_records_are_not_redelivered(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    queue.publish(numbered(b"k", 0, 25))
    consumer = queue.consumer("g")
    consumer.commit(drain(consumer, 25)[-1])
    consumer.close()
    later = numbered(b"k", 25, 5)
    queue.publish(later)
    again = queue.consumer("g")
    assert records_of(drain(again, 5)) == later
    assert again.poll(100, 0.2) is None


def test_dead_letters_round_trip_newest_first(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    assert queue.read_dead_letters(10) == []
    older = DeadLetter(value=b'{"msg": "x"}', reason="mapping error: field [ts]", at_ms=1_700_000_000_000)
    newer = DeadLetter(value=b"\x00\xff raw", reason="document too large ✗", at_ms=1_700_000_000_500)
    queue.dead_letter([older])
    queue.dead_letter([newer])
    assert queue.read_dead_letters(10) == [newer, older]
    assert queue.read_dead_letters(1) == [newer]
    assert queue.stats("g").dead_letters == 2


def letters(count: int, start: int = 0) -> list[DeadLetter]:
    return [DeadLetter(value=b"payload-%04d" % i, reason=f"refused {i % 3}", at_ms=1_700_000_000_000 + i)
            for i in range(start, start + count)]


def read_all(cursor: DeadLetterCursor, per_read: int) -> tuple[list[DeadLetter], list[DeadLetterBatch]]:
    batches: list[DeadLetterBatch] = []
    while (batch := cursor.read(per_read)) is not None:
        assert 0 < len(batch.letters) <= per_read
        batches.append(batch)
    return [letter for batch in batches for letter in batch.letters], batches


def test_dead_letter_cursor_reads_every_letter_once_across_commits(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    written = letters(7)
    queue.dead_letter(written)
    cursor = queue.dead_letter_cursor("replay")
    assert cursor.pending == 7
    first = cursor.read(3)
    assert first is not None and len(first.letters) == 3
    cursor.commit(first)
    cursor.close()

    again = queue.dead_letter_cursor("replay")
    assert again.pending == 4
    rest, batches = read_all(again, 2)
    again.commit(batches[-1])
    again.close()
    assert Counter(first.letters + rest) == Counter(written)  # each letter once, reason and time kept

    done = queue.dead_letter_cursor("replay")
    assert done.pending == 0 and done.read(10) is None
    done.close()
    assert len(queue.read_dead_letters(100)) == 7  # replayed letters are still listed


def test_dead_letter_cursor_stops_where_the_letters_ended_when_opened(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    queue.dead_letter(letters(3))
    cursor = queue.dead_letter_cursor("replay")
    later = letters(2, start=100)
    queue.dead_letter(later)  # e.g. refused again while being replayed: waits for the next replay
    seen, batches = read_all(cursor, 10)
    assert sorted(letter.value for letter in seen) == [b"payload-0000", b"payload-0001", b"payload-0002"]
    cursor.commit(batches[-1])
    cursor.close()
    following = queue.dead_letter_cursor("replay")
    assert following.pending == 2
    assert Counter(read_all(following, 10)[0]) == Counter(later)
    following.close()


def test_uncommitted_dead_letters_are_read_again_and_groups_are_independent(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    written = letters(5)
    queue.dead_letter(written)
    cursor = queue.dead_letter_cursor("a")
    assert len(read_all(cursor, 10)[0]) == 5
    cursor.close()  # nothing committed
    cursor = queue.dead_letter_cursor("a")
    assert cursor.pending == 5
    seen, batches = read_all(cursor, 10)
    cursor.commit(batches[-1])
    cursor.close()
    assert Counter(seen) == Counter(written)
    other = queue.dead_letter_cursor("b")
    assert other.pending == 5
    other.close()


def test_dead_letter_cursor_without_dead_letters(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    cursor = queue.dead_letter_cursor("replay")
    assert cursor.pending == 0 and cursor.read(10) is None
    cursor.close()


def test_lag_shrinks_after_commit(queue_factory: QueueFactory) -> None:
    queue = queue_factory()
    consumer = queue.consumer("g")
    queue.publish(numbered(b"k", 0, 100))
    batches = drain(consumer, 100)
    before = queue.stats("g")
    assert before.kind == queue.kind and before.healthy
    lag_before = sum(p.lag for p in before.partitions)
    assert lag_before > 0
    consumer.commit(batches[-1])
    lag_after = sum(p.lag for p in queue.stats("g").partitions)
    assert lag_after < lag_before
    assert lag_after == 0


def test_publish_refuses_with_queue_full_over_the_backlog_limit(queue_factory: QueueFactory) -> None:
    queue = queue_factory(max_backlog_bytes=16 * 1024)
    consumer = queue.consumer("slow")
    accepted = 0
    with pytest.raises(QueueFull) as info:
        for i in range(100):  # 100 KiB in all: far over the limit
            queue.publish([QueueRecord(b"k", b"%04d" % i + b"x" * 1020)])
            accepted += 1
    assert info.value.retry_after_s > 0
    assert 0 < accepted < 100
    consumer.commit(drain(consumer, accepted)[-1])
    queue.publish([QueueRecord(b"k", b"accepted again once the consumer caught up")])
