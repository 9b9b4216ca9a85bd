"""SegmentLog framing, recovery and segment handling, and the embedded queue's own guarantees.

Everything runs on real files under tmp_path: torn tails and corruption are written by hand.
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from pathlib import Path

import pytest

from logflow.backends.errors import BackendUnavailable, QueueFull, StorageFull
from logflow.backends.queue.base import QueueRecord
from logflow.backends.queue.embedded import EmbeddedQueue, decode_records, encode_records
from logflow.backends.queue.segments import (
    LogLocked,
    OffsetOutOfRange,
    SegmentCorrupted,
    SegmentLog,
    frame,
    segment_name,
)


def framed(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def payloads_of(log: SegmentLog, offset: int = 0) -> list[bytes]:
    items, _ = log.read_from(offset, 1_000_000, 1 << 30)
    return [payload for _, payload in items]


# -- framing -------------------------------------------------------------------------------------


def test_records_are_framed_with_length_and_crc(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        end = log.append_many([b"abc", b"hello"])
    raw = (tmp_path / segment_name(0)).read_bytes()
    assert raw == framed(b"abc") + framed(b"hello")
    assert end == len(raw) == 8 + 3 + 8 + 5


def test_read_from_returns_offsets_and_next_offset(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        log.append_many([b"a" * 10, b"b" * 20])
        log.append_many([b"c" * 30])
        items, nxt = log.read_from(0, 2, 1 << 20)
        assert items == [(0, b"a" * 10), (18, b"b" * 20)]
        assert nxt == 46
        assert log.read_from(nxt, 10, 1 << 20) == ([(46, b"c" * 30)], 84)
        assert log.read_from(84, 10, 1 << 20) == ([], 84)


def test_max_bytes_limits_a_read_but_one_record_always_comes(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        log.append_many([b"x" * 100, b"y" * 100, b"z" * 100])
        items, nxt = log.read_from(0, 10, 1)
        assert [p for _, p in items] == [b"x" * 100] and nxt == 108
        items, _ = log.read_from(0, 10, 216)
        assert [p for _, p in items] == [b"x" * 100, b"y" * 100]


def test_empty_payloads_are_refused(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log, pytest.raises(ValueError, match="empty"):
        log.append_many([b"ok", b""])


def test_queue_payload_encoding_round_trips() -> None:
    records = [QueueRecord(b"svc", b"v1"), QueueRecord(b"", b""), QueueRecord(b"k" * 300, bytes(range(256)))]
    blob = encode_records(records)
    # The queue's own framing must be exactly what the segment framing makes of its payloads.
    payloads = [struct.pack("<H", len(r.key)) + r.key + r.value for r in records]
    assert blob == frame(payloads)
    assert decode_records([(0, p) for p in payloads]) == records
    with pytest.raises(ValueError, match="too large"):
        encode_records([QueueRecord(b"k" * 70_000, b"v")])


# -- recovery ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        struct.pack("<II", 100, 0) + b"partial payload",  # a write cut short
        b"\x05\x00\x00",  # a partial header
        bytes(4096),  # zeros, as a power cut can leave after a size update
        framed(b"new record")[:-1] + b"?",  # complete length, wrong CRC
    ],
    ids=["partial-record", "partial-header", "zero-filled", "bad-crc"],
)
def test_recovery_cuts_a_torn_tail(tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with SegmentLog(tmp_path) as log:
        good_end = log.append_many([b"one", b"two", b"three"])
    with (tmp_path / segment_name(0)).open("ab") as f:
        f.write(tail)
    with caplog.at_level(logging.WARNING), SegmentLog(tmp_path) as log:
        assert log.durable_end() == good_end
        assert (tmp_path / segment_name(0)).stat().st_size == good_end
        assert payloads_of(log) == [b"one", b"two", b"three"]
        end = log.append_many([b"four"])  # lands right after the good records, tail gone
        assert payloads_of(log) == [b"one", b"two", b"three", b"four"]
        assert end == good_end + 8 + 4
    assert f"cut {len(tail)} bytes" in caplog.text


def test_recovery_keeps_a_clean_log_untouched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SegmentLog(tmp_path) as log:
        end = log.append_many([b"a", b"b"])
    with caplog.at_level(logging.WARNING), SegmentLog(tmp_path) as log:
        assert log.durable_end() == end
    assert "cut" not in caplog.text


def test_corruption_below_the_durable_end_is_reported_not_skipped(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as writer, SegmentLog(tmp_path, mode="reader") as reader:
        writer.append_many([b"first", b"second", b"third"])
        path = tmp_path / segment_name(0)
        raw = bytearray(path.read_bytes())
        raw[8 + 5 + 8 + 2] ^= 0xFF  # flip a byte inside "second"
        path.write_bytes(bytes(raw))
        assert reader.read_from(0, 1, 1 << 20)[0] == [(0, b"first")]
        with pytest.raises(SegmentCorrupted):
            reader.read_from(13, 10, 1 << 20)


# -- segments ------------------------------------------------------------------------------------


def test_segments_roll_and_are_named_by_their_start_offset(tmp_path: Path) -> None:
    record = b"r" * 42  # 50 bytes framed
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        for _ in range(5):
            log.append_many([record])
        names = sorted(p.name for p in tmp_path.glob("*.seg"))
        assert names == [segment_name(0), segment_name(100), segment_name(200)]
        assert names[1] == "00000000000000000100.seg"
        items, nxt = log.read_from(0, 100, 1 << 20)  # one read crosses segment boundaries
        assert [off for off, _ in items] == [0, 50, 100, 150, 200]
        assert nxt == 250


def test_reopen_continues_in_the_last_segment(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        for i in range(3):
            log.append_many([b"%d" % i * 42])
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        assert log.durable_end() == 150
        log.append_many([b"3" * 42])
        assert payloads_of(log, 100) == [b"2" * 42, b"3" * 42]


def test_delete_before_removes_only_fully_consumed_segments(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, segment_bytes=100) as log:
        for _ in range(5):
            log.append_many([b"r" * 42])  # segments start at 0, 100, 200
        assert log.delete_before(150) == 1  # 0..99 is fully below; 100..199 is not
        assert log.first_offset() == 100
        assert not (tmp_path / segment_name(0)).exists()
        assert log.delete_before(10**9) == 1  # never the last (active) segment
        assert [p.name for p in tmp_path.glob("*.seg")] == [segment_name(200)]
        with pytest.raises(OffsetOutOfRange):
            log.read_from(0, 10, 1 << 20)
        log.append_many([b"after"])
        assert payloads_of(log, 200)[-1] == b"after"


# -- head file and the single writer -------------------------------------------------------------


def test_head_file_publishes_the_durable_end(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as log:
        end = log.append_many([b"payload"])
        raw = (tmp_path / "head").read_bytes()
        assert raw == end.to_bytes(8, "little") + zlib.crc32(end.to_bytes(8, "little")).to_bytes(4, "little")


def test_reader_never_reads_past_the_head(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as writer, SegmentLog(tmp_path, mode="reader") as reader:
        end = writer.append_many([b"durable"])
        # Bytes a writer has written but not yet fsynced and published: complete, and partial.
        with (tmp_path / segment_name(0)).open("ab") as f:
            f.write(framed(b"in flight") + framed(b"torn")[:5])
        assert reader.durable_end() == end
        assert reader.read_from(0, 10, 1 << 20) == ([(0, b"durable")], end)
        assert reader.read_from(end, 10, 1 << 20) == ([], end)


def test_a_corrupt_head_is_ignored_by_readers(tmp_path: Path) -> None:
    with SegmentLog(tmp_path) as writer, SegmentLog(tmp_path, mode="reader") as reader:
        end = writer.append_many([b"a"])
        assert reader.durable_end() == end
        (tmp_path / "head").write_bytes((10**6).to_bytes(8, "little") + b"\0\0\0\0")
        assert reader.durable_end() == end  # keeps the last good value rather than trusting garbage


def test_only_one_writer_per_directory(tmp_path: Path) -> None:
    first = SegmentLog(tmp_path)
    with pytest.raises(LogLocked, match="already has a writer"):
        SegmentLog(tmp_path)
    first.close()
    SegmentLog(tmp_path).close()  # the lock goes with the writer


def test_shared_appenders_interleave_and_repair_a_crashed_tail(tmp_path: Path) -> None:
    with SegmentLog(tmp_path, mode="shared") as one, SegmentLog(tmp_path, mode="shared") as two:
        one.append_many([b"one"])
        two.append_many([b"two"])
        # An appender that died mid-write leaves bytes past the head; the next append cuts them.
        with (tmp_path / segment_name(0)).open("ab") as f:
            f.write(framed(b"dying")[:6])
        one.append_many([b"three"])
        assert payloads_of(two) == [b"one", b"two", b"three"]


# -- the embedded queue ---------------------------------------------------------------------------


def small_queue(
    path: Path,
    *,
    max_backlog_bytes: int = 1 << 30,
    min_free_disk_bytes: int = 0,
    segment_bytes: int = 1 << 20,
) -> EmbeddedQueue:
    return EmbeddedQueue(
        path,
        max_backlog_bytes=max_backlog_bytes,
        min_free_disk_bytes=min_free_disk_bytes,
        segment_bytes=segment_bytes,
    )


def test_one_publish_is_one_write_and_one_fsync(tmp_path: Path) -> None:
    queue = small_queue(tmp_path)
    try:
        before = queue.fsync_count
        queue.publish([QueueRecord(b"k", b"v%d" % i) for i in range(1000)])
        assert queue.fsync_count == before + 1
    finally:
        queue.close()


def test_concurrent_publishers_share_fsyncs(tmp_path: Path) -> None:
    queue = small_queue(tmp_path)
    threads, per_thread = 16, 25
    start = threading.Barrier(threads)

    def publish(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            queue.publish([QueueRecord(b"t%d" % t, b"%d" % i)] * 10)

    workers = [threading.Thread(target=publish, args=(t,)) for t in range(threads)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert queue.fsync_count < threads * per_thread
        consumer = queue.consumer("check")
        got = 0
        while (batch := consumer.poll(10_000, 0.1)) is not None:
            got += len(batch.records)
        assert got == threads * per_thread * 10
    finally:
        queue.close()


def test_storage_full_when_the_disk_is_short_of_the_reserve(tmp_path: Path) -> None:
    queue = small_queue(tmp_path, min_free_disk_bytes=1 << 62)
    try:
        with pytest.raises(StorageFull) as info:
            queue.publish([QueueRecord(b"k", b"v")])
        assert info.value.retry_after_s > 0
        assert not queue.stats("g").healthy
    finally:
        queue.close()


def test_backlog_counts_from_the_slowest_group(tmp_path: Path) -> None:
    queue = small_queue(tmp_path, max_backlog_bytes=2500)
    try:
        fast, slow = queue.consumer("fast"), queue.consumer("slow")
        for _ in range(3):
            queue.publish([QueueRecord(b"k", b"x" * 1000)])
        batch = fast.poll(100, 1.0)
        assert batch is not None
        fast.commit(batch)
        with pytest.raises(QueueFull):  # "slow" has not consumed anything
            queue.publish([QueueRecord(b"k", b"x")])
        batch = slow.poll(100, 1.0)
        assert batch is not None
        slow.commit(batch)
        queue.publish([QueueRecord(b"k", b"x")])
    finally:
        queue.close()


def test_commit_deletes_segments_every_group_consumed(tmp_path: Path) -> None:
    queue = small_queue(tmp_path, segment_bytes=1000)
    try:
        consumer = queue.consumer("g")
        for _ in range(10):
            queue.publish([QueueRecord(b"k", b"x" * 500)])
        assert len(list(tmp_path.glob("*.seg"))) >= 5
        while (batch := consumer.poll(3, 0.1)) is not None:
            consumer.commit(batch)
        assert len(list(tmp_path.glob("*.seg"))) == 1
        assert queue.stats("g").partitions[0].lag == 0
    finally:
        queue.close()


def test_a_group_has_one_consumer_at_a_time(tmp_path: Path) -> None:
    queue = small_queue(tmp_path)
    try:
        first = queue.consumer("processor")
        with pytest.raises(BackendUnavailable, match="already has a consumer"):
            queue.consumer("processor")
        first.close()
        queue.consumer("processor").close()
        with pytest.raises(ValueError, match="invalid consumer group"):
            queue.consumer("../escape")
    finally:
        queue.close()


def test_publish_fails_cleanly_once_closed_or_when_the_writer_died(tmp_path: Path) -> None:
    queue = small_queue(tmp_path)
    queue.publish([QueueRecord(b"k", b"before")])
    queue._log.close()  # the log failing under the writer thread (as after a failed fsync)
    with pytest.raises(BackendUnavailable):
        queue.publish([QueueRecord(b"k", b"lost")])
    with pytest.raises(BackendUnavailable, match="writer stopped"):
        queue.publish([QueueRecord(b"k", b"refused")])
    assert not queue.stats("g").healthy
    queue.close()
    with pytest.raises(BackendUnavailable):
        queue.publish([QueueRecord(b"k", b"after")])


def test_a_read_only_queue_consumes_but_cannot_publish(tmp_path: Path) -> None:
    writer = small_queue(tmp_path)
    reader = EmbeddedQueue(tmp_path, writer=False, min_free_disk_bytes=0)
    try:
        writer.publish([QueueRecord(b"k", b"v")])
        with pytest.raises(BackendUnavailable, match="without the writer"):
            reader.publish([QueueRecord(b"k", b"v")])
        batch = reader.consumer("g").poll(10, 1.0)
        assert batch is not None and batch.records == [QueueRecord(b"k", b"v")]
    finally:
        reader.close()
        writer.close()
