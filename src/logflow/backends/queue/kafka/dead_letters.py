"""Dead letters on Kafka: reading one back from its record, and cursors that replay them.

A replay group is an ordinary Kafka consumer group id that only ever commits offsets on the
dead-letter topic: the cursor assign()s every partition at the group's committed offset (the
oldest kept record if it never committed) and reads up to the high watermarks it found when it
was opened.

Kafka cannot lock the group: two replays of one group started at the same moment from two
processes may both publish some letters (the store keeps each event once), and a commit never
moves the group's offset backwards. A group that never has members keeps its offsets for the
broker's ``offsets.retention.minutes`` (7 days by default) after its last commit; a replay after
that starts again at the oldest kept letter.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.base import DeadLetter, DeadLetterBatch
from logflow.backends.queue.kafka import admin as kadmin
from logflow.backends.queue.kafka.config import AT_MS_HEADER, REASON_HEADER, KafkaOptions
from logflow.backends.queue.kafka.diagnostics import describe

log = logging.getLogger(__name__)

# How long one read may go without a record before the cursor gives up on the broker.
_READ_STALL_S = 15.0
SortedLetter = tuple[tuple[int, int], DeadLetter]  # ((record timestamp, at_ms), letter)


def dead_letter_of(message: Message) -> SortedLetter:
    """A dead letter from its record, with (record timestamp, at_ms) to order partitions by."""
    raw = message.headers() or []
    headers = dict(raw.items() if isinstance(raw, dict) else raw)
    _, timestamp = message.timestamp()

    def text(name: str) -> str:
        value = headers.get(name)
        return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")

    at_ms_text = text(AT_MS_HEADER)
    at_ms = int(at_ms_text) if at_ms_text.isdigit() else timestamp  # written by something else
    letter = DeadLetter(value=message.value() or b"", reason=text(REASON_HEADER), at_ms=at_ms)
    return (timestamp, at_ms), letter


class KafkaDeadLetterCursor:
    """:class:`~logflow.backends.queue.base.DeadLetterCursor` over the dead-letter topic."""

    def __init__(self, options: KafkaOptions, admin: AdminClient, topic: str, group_id: str) -> None:
        self.group_id = group_id
        self._topic = topic
        deadline = kadmin.Deadline(options.admin_timeout_s)
        metadata = kadmin.cluster_metadata(admin, deadline)
        partitions = kadmin.partitions_of(metadata, topic) or []
        marks = kadmin.watermarks(admin, {topic: partitions}, deadline)
        committed = kadmin.committed_offsets(admin, group_id, topic, partitions, deadline) if partitions else {}
        # Per partition: (next offset to read, end as of now); only partitions with letters to go.
        self._ranges: dict[int, tuple[int, int]] = {}
        for (_, partition), mark in marks.items():
            start = max(mark.low, committed.get(partition, mark.low))
            if start > mark.high:  # the partition lost records (an unclean leader election)
                log.warning("replay group %s: committed offset %d of dead-letter partition %d is past its end %d; "
                            "reading from the oldest kept letter", group_id, start, partition, mark.high)
                start = mark.low
            if start < mark.high:
                self._ranges[partition] = (start, mark.high)
        self._pending = sum(end - start for start, end in self._ranges.values())
        self._unfinished = set(self._ranges)
        # Next offset per partition read from so far: a batch's position is a copy, so committing
        # a batch commits everything read before it too, on every partition.
        self._read_to: dict[int, int] = {}
        self._closed = False
        self._broken = False  # a read failed part way: its letters count as not read, so stop here
        try:
            self._consumer = Consumer(options.replay(group_id))
        except KafkaException as exc:
            raise BackendUnavailable(f"cannot read dead letters: {describe(exc)}") from exc
        try:
            if self._ranges:
                self._consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in self._ranges.items()])
        except KafkaException as exc:
            self._consumer.close()
            raise BackendUnavailable(f"cannot read dead letters: {describe(exc)}") from exc

    @property
    def pending(self) -> int:
        return self._pending

    def read(self, max_letters: int) -> DeadLetterBatch | None:
        self._check_open()
        letters: list[DeadLetter] = []
        stalled_at = time.monotonic() + _READ_STALL_S
        self._broken = True  # until this read returns
        try:
            while self._unfinished and len(letters) < max_letters:
                messages = self._consumer.consume(max_letters - len(letters), 0.5)
                if not messages and time.monotonic() > stalled_at:
                    raise BackendUnavailable(
                        f"no dead letter of partition(s) {sorted(self._unfinished)} came within {_READ_STALL_S:.0f}s"
                    )
                for message in messages:
                    self._take(message, letters)
                if messages:
                    stalled_at = time.monotonic() + _READ_STALL_S
        except KafkaException as exc:
            raise BackendUnavailable(f"reading dead letters failed: {describe(exc)}") from exc
        self._broken = False
        if not letters:
            return None
        return DeadLetterBatch(letters=letters, position=dict(self._read_to))

    def commit(self, batch: DeadLetterBatch) -> None:
        self._check_open()
        following = batch.position
        if not isinstance(following, dict):
            raise TypeError("commit() needs a batch returned by this cursor's read()")
        try:
            # Never backwards: another replay of the group (another process) may have got further.
            now = self._consumer.committed([TopicPartition(self._topic, p) for p in following], timeout=10)
            ahead = {tp.partition: tp.offset for tp in now if tp.error is None and tp.offset >= 0}
            offsets = [TopicPartition(self._topic, p, offset) for p, offset in following.items()
                       if offset > ahead.get(p, -1)]
            if offsets:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise BackendUnavailable(f"committing replayed dead letters failed: {describe(exc)}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def _take(self, message: Message, letters: list[DeadLetter]) -> None:
        partition, offset = message.partition(), message.offset()
        if partition is None or partition not in self._unfinished:
            return
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._unfinished.discard(partition)
                return
            raise BackendUnavailable(f"reading dead letters failed: {describe(error)}")
        if offset is None:
            return
        start, end = self._ranges[partition]
        if start <= offset < end:
            letters.append(dead_letter_of(message)[1])
            self._read_to[partition] = offset + 1
            self._ranges[partition] = (offset + 1, end)
        if offset >= end - 1:
            self._unfinished.discard(partition)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("dead-letter cursor is closed")
        if self._broken:
            raise BackendUnavailable("a read of this dead-letter cursor failed part way: open a new cursor")
