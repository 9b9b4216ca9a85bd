"""One member of a Kafka consumer group, with commits that stay correct across rebalances."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.base import ConsumedBatch, QueueRecord
from logflow.backends.queue.kafka.config import ClientConfig
from logflow.backends.queue.kafka.diagnostics import ThrottledLog, describe
from logflow.backends.queue.kafka.packing import PACK_HEADER, decode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Position:
    """A batch's commit position: per partition, (assignment epoch, last offset + 1)."""

    owner: KafkaConsumer
    offsets: dict[int, tuple[int, int]]


@dataclass(slots=True)
class _Carried:
    """The rest of a message whose records did not all fit the batch they were read for."""

    partition: int
    epoch: int
    offset: int
    records: list[QueueRecord]


class KafkaConsumer:
    """:class:`~logflow.backends.queue.base.QueueConsumer` on a Kafka consumer group.

    Offsets are committed only by :meth:`commit`, synchronously, for exactly the batch's
    records. Every time a partition is assigned it gets a new *epoch*; a batch remembers the
    epoch its records were read under, and its offsets for a partition that was revoked since
    (even if assigned back later) are dropped at commit time: that partition's uncommitted records
    belong to whichever member owns it now, and committing them here could skip or rewind them.

    A message may hold a pack of records (see packing.py). A batch never holds more than the
    records asked for: the rest of a pack is carried into the next poll, and the pack's offset is
    committed with the batch that holds its last record. A batch that ends inside a pack commits
    up to the message before it, so after a crash or rebalance the whole pack comes again: its
    first records a second time (the store counts them as duplicates), never one of them lost.

    Not thread-safe for concurrent use (one consumer per processor loop), but :meth:`close` may
    be called from another thread: a lock serialises it with a running :meth:`poll`.
    """

    def __init__(self, config: ClientConfig, topic: str, group: str) -> None:
        self.group = group
        self._topic = topic
        self._lock = threading.Lock()
        self._epochs: dict[int, int] = {}  # assigned partition -> epoch of that assignment
        # Per assigned partition, where the group's committed position is as far as this member
        # knows: what it committed, or else the first offset it read after the assignment (which
        # is where the group's committed offset, or the reset policy, put it). rewind() seeks here.
        self._committed: dict[int, int] = {}
        self._next_epoch = 0
        self._carried: list[_Carried] = []
        self._per_message = 1.0  # records per message lately: how many messages a poll asks for
        self._closed = False
        self._errors = ThrottledLog(log)
        try:
            self._consumer = Consumer(config)
            self._consumer.subscribe(
                [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        except KafkaException as exc:
            raise BackendUnavailable(
                f"cannot create Kafka consumer for group {group!r}: {describe(exc)}"
            ) from exc

    @property
    def assignment(self) -> frozenset[int]:
        """Partitions currently assigned to this member (as of its last poll)."""
        return frozenset(self._epochs)

    def poll(self, max_records: int, timeout_s: float) -> ConsumedBatch | None:
        """Up to ``max_records`` records, waiting up to ``timeout_s`` for the first one.

        Like the embedded queue, a poll returns as soon as records are there rather than waiting
        out the timeout for a full batch: the first ``consume`` waits for one message, the second
        takes what the client has already fetched (up to a full batch under load).
        """
        with self._lock:
            self._check_open()
            records: list[QueueRecord] = []
            offsets: dict[int, tuple[int, int]] = {}
            self._take_carried(records, offsets, max_records)
            if len(records) < max_records and not self._carried:
                messages = self._consume(max_records - len(records), 0.0 if records else timeout_s)
                self._add(messages, records, offsets, max_records)
            if not records:
                return None
            return ConsumedBatch(records=records, position=_Position(self, offsets))

    def _consume(self, wanted: int, timeout_s: float) -> list[Message]:
        """About enough messages for ``wanted`` records (the first one waiting up to ``timeout_s``)."""
        try:
            messages = self._consumer.consume(1, max(0.0, timeout_s))
            self._note_start(messages)
            more = -(-wanted // max(1, int(self._per_message))) - 1
            if messages and more > 0:
                # Rebalance callbacks may run inside the second call. A partition whose
                # assignment changed in between makes the first message stale: librdkafka
                # restarts that partition from its committed offset, so drop the message.
                before = dict(self._epochs)
                later = self._consumer.consume(more, 0)
                self._note_start(later)
                messages += later
                partition = messages[0].partition()
                if partition is not None and self._epochs.get(partition) != before.get(partition):
                    messages = messages[1:]
        except (KafkaException, RuntimeError) as exc:
            raise BackendUnavailable(
                f"Kafka consume failed for group {self.group!r}: {describe(exc)}"
            ) from exc
        return messages

    def _note_start(self, messages: list[Message]) -> None:
        """Remember where a partition's reading began, as soon as a message of it arrives: if
        this poll fails before returning the message, rewind() must still seek back to it."""
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None and partition in self._epochs:
                self._committed.setdefault(partition, offset)

    def commit(self, batch: ConsumedBatch) -> None:
        """Synchronously commit, per partition, the batch's last offset + 1.

        Partitions revoked since the batch was read are left out (see the class docstring), and
        so are offsets at or below what this member already committed: commits never go back.
        """
        position = batch.position
        if not isinstance(position, _Position) or position.owner is not self:
            raise TypeError("commit() needs a batch returned by this consumer's poll()")
        with self._lock:
            self._check_open()
            offsets = []
            for partition, (epoch, offset) in position.offsets.items():
                if self._epochs.get(partition) != epoch:
                    log.info("group %s: not committing partition %d, revoked since the batch was read",
                             self.group, partition)
                elif offset > self._committed.get(partition, -1):
                    offsets.append(TopicPartition(self._topic, partition, offset))
            if not offsets:
                return
            try:
                results = self._consumer.commit(offsets=offsets, asynchronous=False)
            except (KafkaException, RuntimeError) as exc:
                # E.g. REBALANCE_IN_PROGRESS: the records are redelivered, here or to the new owner.
                raise BackendUnavailable(
                    f"Kafka commit failed for group {self.group!r}: {describe(exc)}"
                ) from exc
            failed = []
            for tp in results:
                if tp.error is None:
                    self._committed[tp.partition] = tp.offset
                else:
                    failed.append(f"{tp.partition}: {describe(tp.error)}")
            if failed:
                raise BackendUnavailable(f"Kafka commit failed for group {self.group!r} on partition(s) "
                                         + "; ".join(failed))

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset: uncommitted records come again.

        Uses the positions this member tracks, not a broker round trip, so it works while the
        cluster is down (the processor rewinds precisely when something failed).
        """
        with self._lock:
            if self._closed:
                return
            not_moved = set()
            for partition, offset in self._committed.items():
                try:
                    self._consumer.seek(TopicPartition(self._topic, partition, offset))
                except KafkaException as exc:
                    # The partition is not being fetched yet (just assigned): nothing was read
                    # from it, so there is nothing to rewind.
                    not_moved.add(partition)
                    log.debug("group %s: seek of partition %d skipped: %s",
                              self.group, partition, describe(exc))
            # A pack read in part comes again whole from its offset; where the seek did not
            # happen, its rest is still only here.
            self._carried[:] = [rest for rest in self._carried if rest.partition in not_moved]

    def close(self) -> None:
        """Leave the group, so its partitions (and their uncommitted records) move to other members."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._carried.clear()
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing Kafka consumer of group %s: %s", self.group, describe(exc))
            self._epochs.clear()
            self._committed.clear()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable(f"consumer of group {self.group!r} is closed")

    def _take_carried(self, records: list[QueueRecord], offsets: dict[int, tuple[int, int]], limit: int) -> None:
        carried = self._carried
        while carried and len(records) < limit:
            rest = carried[0]
            if self._epochs.get(rest.partition) != rest.epoch:
                carried.pop(0)  # revoked since it was read: the new owner reads the pack again
                continue
            room = limit - len(records)
            if len(rest.records) > room:
                records += rest.records[:room]
                rest.records = rest.records[room:]
                return
            records += rest.records
            offsets[rest.partition] = (rest.epoch, rest.offset + 1)
            carried.pop(0)

    def _add(self, messages: list[Message], records: list[QueueRecord], offsets: dict[int, tuple[int, int]],
             limit: int) -> None:
        """Append the records of ``messages``; what does not fit under ``limit`` is carried."""
        epochs, committed, carried = self._epochs, self._committed, self._carried
        count = 0
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            epoch = epochs.get(partition)
            if epoch is None:
                # Revoked while this consume ran. librdkafka already drops such messages; if
                # one slips through, it is the new owner's to process, not ours.
                continue
            if partition not in committed:
                committed[partition] = offset
            inside = self._records_of(message)
            count += len(inside)
            room = limit - len(records)
            if carried or len(inside) > room:
                if not carried and room > 0:
                    records += inside[:room]
                    inside = inside[room:]
                carried.append(_Carried(partition, epoch, offset, inside))
                continue
            records += inside
            offsets[partition] = (epoch, offset + 1)
        if messages:
            self._per_message = max(1.0, count / len(messages))

    @staticmethod
    def _records_of(message: Message) -> list[QueueRecord]:
        key, value = message.key() or b"", message.value() or b""
        headers = message.headers()
        # A list of (name, value) from a consumer; the type also allows a dict (a producer's input).
        if headers and (PACK_HEADER in headers if isinstance(headers, dict)
                        else any(header[0] == PACK_HEADER for header in headers)):
            try:
                return decode(key, value)
            except ValueError as exc:
                # Damaged in a way Kafka's checksums did not catch, or written by something else:
                # the whole value goes on as one record, which the processor dead-letters.
                log.warning("undecodable record pack at offset %s: %s", message.offset(), exc)
        return [QueueRecord(key, value)]

    # Rebalance callbacks run inside consume(), on the polling thread, under self._lock. They do
    # not call (incremental_)assign: confluent_kafka does that for us once they return.

    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self._topic:
                self._next_epoch += 1
                self._epochs[tp.partition] = self._next_epoch
                self._committed.pop(tp.partition, None)
        log.info("group %s: assigned partition(s) %s", self.group, sorted(tp.partition for tp in partitions))

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.info("group %s: revoked partition(s) %s", self.group, sorted(tp.partition for tp in partitions))

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.warning("group %s: lost partition(s) %s (session timed out?); their uncommitted records "
                    "go to other members", self.group, sorted(tp.partition for tp in partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.topic == self._topic:
                self._epochs.pop(tp.partition, None)
                self._committed.pop(tp.partition, None)
        self._carried[:] = [rest for rest in self._carried if rest.partition in self._epochs]

    def _on_message_error(self, error: KafkaError) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise BackendUnavailable(f"Kafka consumer of group {self.group!r} failed: {describe(error)}")
        # Transient (broker down, topic not there yet, ...): librdkafka retries by itself.
        self._errors.warning(code, "Kafka consumer of group %s: %s", self.group, describe(error))
