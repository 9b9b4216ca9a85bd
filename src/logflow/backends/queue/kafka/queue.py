"""The Kafka EventQueue: ingest publishes to a partitioned topic, processors form a consumer group."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.base import DeadLetter, PartitionLag, QueueRecord, QueueStats
from logflow.backends.queue.kafka import admin as kadmin
from logflow.backends.queue.kafka.config import AT_MS_HEADER, REASON_HEADER, KafkaOptions, parse_kafka_url
from logflow.backends.queue.kafka.consumer import KafkaConsumer
from logflow.backends.queue.kafka.dead_letters import KafkaDeadLetterCursor, SortedLetter, dead_letter_of
from logflow.backends.queue.kafka.diagnostics import describe
from logflow.backends.queue.kafka.packing import PACK_HEADER, PACK_VERSION, encode, packs
from logflow.backends.queue.kafka.producer import Headers, OutRecord, ReliableProducer

if TYPE_CHECKING:
    from logflow.settings import Settings

log = logging.getLogger(__name__)

_TOPIC_SETUP_S = 15.0  # creating topics may wait for a controller; only at start-up
_DEAD_LETTER_READ_S = 5.0
_SERVE_INTERVAL_S = 0.1
_PACKED: Headers = [(PACK_HEADER, PACK_VERSION)]


class KafkaQueue:
    """:class:`~logflow.backends.queue.base.EventQueue` on a Kafka cluster, for the distributed shape.

    Records are keyed by service name, so each service's events stay in order in one partition;
    the records of one key in one publish travel packed into few messages (see packing.py), so
    the per-message costs of producer, broker and consumer are paid per pack, not per event.
    ``publish`` returns once every in-sync replica has the records (idempotent producer,
    ``acks=all``) and fails within about ``delivery_timeout_s`` when the cluster is down.
    Processors calling :meth:`consumer` with the same group share the partitions. Dead letters go
    to their own topic with the reason and time in headers.

    The topics are created at start-up if missing; if the cluster is unreachable then, the queue
    still comes up (``stats`` reports it down, ``logflow status`` keeps working) and creation is
    retried on the next publish. ``group_prefix`` is put in front of every consumer group id, to
    keep several deployments (or test runs) on one cluster apart.
    """

    kind = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "logflow-events",
        dead_letter_topic: str = "logflow-dead-letters",
        partitions: int = 6,
        group_prefix: str = "",
        client_id: str = "logflow",
        delivery_timeout_s: float = 10.0,
        admin_timeout_s: float = 3.0,
        extra_config: Mapping[str, str] | None = None,
        create_topics: bool = True,
    ) -> None:
        if topic == dead_letter_topic:
            raise ValueError("the dead-letter topic must differ from the event topic")
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.partitions = partitions
        self.group_prefix = group_prefix
        self._options = KafkaOptions(
            bootstrap_servers=bootstrap_servers, client_id=client_id, delivery_timeout_s=delivery_timeout_s,
            admin_timeout_s=admin_timeout_s, extra=dict(extra_config or {}),
        )
        self._admin_renewed = 0.0
        try:
            self._admin = AdminClient(self._options.admin())
        except KafkaException as exc:
            raise BackendUnavailable(f"cannot create Kafka admin client: {describe(exc)}") from exc
        self._producer = ReliableProducer(self._options)
        self._topics_lock = threading.Lock()
        self._topics_ready = not create_topics
        self._consumers: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()
        self._groups: set[str] = set()
        self._closed = False
        self._stop = threading.Event()
        self._service = threading.Thread(target=self._serve, name="logflow-kafka-service", daemon=True)
        self._service.start()
        if create_topics:
            try:
                self._ensure_topics()
            except BackendUnavailable as exc:
                log.warning("Kafka topics not ready at start-up (retried on first use): %s", exc)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaQueue:
        """The queue named by ``LOGFLOW_QUEUE_URL=kafka://host:port[,host:port][?option=value]``."""
        servers, extra = parse_kafka_url(settings.queue_url)
        return cls(
            servers, topic=settings.kafka_topic, dead_letter_topic=settings.kafka_dead_letter_topic,
            partitions=settings.kafka_partitions, extra_config=extra,
        )

    @property
    def bootstrap_servers(self) -> str:
        return self._options.bootstrap_servers

    @property
    def groups(self) -> frozenset[str]:
        """Full ids (prefix included) of the consumer groups this queue has created consumers in."""
        return frozenset(self._groups)

    def group_id(self, group: str) -> str:
        """The Kafka consumer group id used for LogFlow group ``group``."""
        if not group:
            raise ValueError("consumer group must not be empty")
        return self.group_prefix + group

    def publish(self, records: Sequence[QueueRecord]) -> None:
        """Append ``records``; returns once Kafka acknowledged all of them, else BackendUnavailable."""
        if not records:
            return
        self._ensure_topics()
        messages: list[OutRecord] = [
            (key, values[0], None) if len(values) == 1 else (key, encode(values), _PACKED)
            for key, values in packs(records)
        ]
        self._producer.send(self.topic, messages, len(messages))

    def consumer(self, group: str) -> KafkaConsumer:
        """A new member of consumer group ``group``: members share the topic's partitions."""
        group_id = self.group_id(group)
        if self._closed:
            raise BackendUnavailable("Kafka queue is closed")
        try:
            self._ensure_topics()
        except BackendUnavailable as exc:
            # Subscribing still works: the consumer picks the topic up once it exists.
            log.warning("consumer of group %s starts before its topic is ready: %s", group_id, exc)
        consumer = KafkaConsumer(self._options.consumer(group_id), self.topic, group_id)
        self._consumers.add(consumer)
        self._groups.add(group_id)
        return consumer

    def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Append refused payloads to the dead-letter topic, reason and time in headers; waits for acks."""
        if not letters:
            return
        self._ensure_topics()

        def out(letter: DeadLetter) -> tuple[None, bytes, Headers]:
            headers: Headers = [
                (REASON_HEADER, letter.reason.encode()), (AT_MS_HEADER, str(letter.at_ms).encode())
            ]
            return None, letter.value, headers

        self._producer.send(self.dead_letter_topic, map(out, letters), len(letters))

    def read_dead_letters(self, limit: int) -> list[DeadLetter]:
        """The ``limit`` newest dead letters, newest first.

        Reads the last ``limit`` records of every partition of the dead-letter topic (up to the
        high watermark), then merges the partitions by write time: within a partition Kafka's
        order is exact, across partitions the record timestamp (then ``at_ms``) decides.
        """
        if limit <= 0:
            return []
        deadline = kadmin.Deadline(self._options.admin_timeout_s)
        metadata = kadmin.cluster_metadata(self._admin, deadline)
        partitions = kadmin.partitions_of(metadata, self.dead_letter_topic)
        if not partitions:
            return []
        marks = kadmin.watermarks(self._admin, {self.dead_letter_topic: partitions}, deadline)
        ranges = {p: (max(m.low, m.high - limit), m.high) for (_, p), m in marks.items() if m.high > m.low}
        if not ranges:
            return []
        per_partition = self._read_ranges(ranges)
        newest_first = heapq.merge(*(reversed(letters) for letters in per_partition.values()),
                                   key=lambda item: item[0], reverse=True)
        return [letter for _, letter in itertools.islice(newest_first, limit)]

    def dead_letter_cursor(self, group: str) -> KafkaDeadLetterCursor:
        """A cursor over the dead letters replay group ``group`` has not committed yet."""
        if self._closed:
            raise BackendUnavailable("Kafka queue is closed")
        group_id = self.group_id(group)
        self._groups.add(group_id)
        try:
            return KafkaDeadLetterCursor(self._options, self._admin, self.dead_letter_topic, group_id)
        except BackendUnavailable:
            self._renew_admin()
            raise

    def _renew_admin(self) -> None:
        """Replace the admin client after a failure.

        Seen with librdkafka 2.x: after a broker restart, an existing AdminClient kept timing out on
        ``list_consumer_group_offsets`` indefinitely while fresh clients (and the consumers) worked.
        """
        now = time.monotonic()
        if now - self._admin_renewed < 5.0:
            return
        self._admin_renewed = now
        try:
            self._admin = AdminClient(self._options.admin())
        except KafkaException as exc:
            log.warning("cannot recreate the Kafka admin client: %s", describe(exc))

    def stats(self, group: str) -> QueueStats:
        """Per-partition lag of ``group``, dead-letter count and health; answers within ~admin_timeout_s."""
        group_id = self.group_id(group)
        deadline = kadmin.Deadline(self._options.admin_timeout_s)
        where = f"Kafka {self.bootstrap_servers}"
        try:
            metadata = kadmin.cluster_metadata(self._admin, deadline)
            partitions = kadmin.partitions_of(metadata, self.topic)
            if partitions is None:
                return QueueStats(
                    kind=self.kind, healthy=False, detail=f"{where}: topic {self.topic!r} is missing"
                )
            dead_partitions = kadmin.partitions_of(metadata, self.dead_letter_topic) or []
            marks = kadmin.watermarks(
                self._admin, {self.topic: partitions, self.dead_letter_topic: dead_partitions}, deadline
            )
            committed = kadmin.committed_offsets(self._admin, group_id, self.topic, partitions, deadline)
        except BackendUnavailable as exc:
            self._renew_admin()
            return QueueStats(kind=self.kind, healthy=False, detail=f"{where}: {exc}")
        lags = []
        for p in partitions:
            mark = marks[(self.topic, p)]
            # A partition the group never committed starts at its oldest kept record.
            lags.append(PartitionLag(partition=p, committed=committed.get(p, mark.low), end=mark.high))
        problems = []
        leaderless = [p for p in partitions if metadata.topics[self.topic].partitions[p].leader < 0]
        if leaderless:
            problems.append(f"partition(s) {leaderless} of {self.topic!r} have no leader")
        if self._producer.fatal_error:
            problems.append(
                f"producer failed ({self._producer.fatal_error}); it is replaced on the next publish"
            )
        brokers = len(metadata.brokers)
        dead = sum(mark.high - mark.low for (t, _), mark in marks.items() if t == self.dead_letter_topic)
        return QueueStats(
            kind=self.kind,
            healthy=not problems,
            detail="; ".join(problems)
            or f"{where}: topic {self.topic!r} ({len(partitions)} partitions), {brokers} broker(s)",
            partitions=lags,
            backlog_bytes=None,  # Kafka reports offsets, not bytes; the lag is in records
            dead_letters=dead,
        )

    def close(self) -> None:
        """Deliver what is still being published, then close every consumer of this queue."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._service.join()
        self._producer.close()
        for consumer in list(self._consumers):
            consumer.close()

    # -- internals ----------------------------------------------------------------------------

    def _serve(self) -> None:
        """Background thread: the producer's delivery reports, and the admin client's log lines."""
        while not self._stop.is_set():
            self._producer.serve(_SERVE_INTERVAL_S)
            # The admin client hands its librdkafka logs to Python only when polled; unpolled
            # they would pile up in memory while a broker is down.
            self._admin.poll(0)

    def _ensure_topics(self) -> None:
        if self._topics_ready:
            return
        with self._topics_lock:
            if not self._topics_ready:
                kadmin.ensure_topics(
                    self._admin, [self.topic, self.dead_letter_topic], self.partitions,
                    probe_s=self._options.admin_timeout_s, create_s=_TOPIC_SETUP_S,
                )
                self._topics_ready = True

    def _read_ranges(self, ranges: dict[int, tuple[int, int]]) -> dict[int, list[SortedLetter]]:
        """Dead letters of offsets [start, end) per partition, each tagged with its sort key."""
        found: dict[int, list[SortedLetter]] = {p: [] for p in ranges}
        unfinished = set(ranges)
        deadline = kadmin.Deadline(_DEAD_LETTER_READ_S)
        try:
            reader = Consumer(self._options.reader())
        except KafkaException as exc:
            raise BackendUnavailable(f"cannot create Kafka consumer: {describe(exc)}") from exc
        try:
            topic = self.dead_letter_topic
            reader.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
            while unfinished and not deadline.expired():
                for message in reader.consume(1000, min(0.2, deadline.left())):
                    partition, offset = message.partition(), message.offset()
                    if partition is None or partition not in unfinished:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            unfinished.discard(partition)
                        else:
                            log.warning("reading dead letters: %s", describe(error))
                        continue
                    if offset is None:
                        continue
                    start, end = ranges[partition]
                    if offset >= start:
                        found[partition].append(dead_letter_of(message))
                    if offset >= end - 1:
                        unfinished.discard(partition)
        except KafkaException as exc:
            raise BackendUnavailable(f"reading dead letters failed: {describe(exc)}") from exc
        finally:
            reader.close()
        if unfinished:
            log.warning("dead-letter partition(s) %s not read to the end within %.0fs",
                        sorted(unfinished), _DEAD_LETTER_READ_S)
        return found
