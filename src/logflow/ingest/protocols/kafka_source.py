"""Kafka as a source: consume topics of JSON logs that other systems already produce.

A thin adapter like every protocol: each message value is decoded exactly as a native JSON ingest
body (one object, an array, or NDJSON: :func:`~logflow.ingest.decode.decode_json_items`), handed
to the one pipeline (``runtime.pipeline.submit``), and the source offsets are committed only after
``submit`` returned, i.e. once the events are durable in LogFlow's own queue. Delivery is therefore
at least once, and a redelivery is not a duplicate: an item without an ``id`` gets one derived from
its (topic, partition, offset[, item]) so the idempotent store keeps it once.

Items the pipeline rejects (bad JSON, invalid events) go to LogFlow's dead-letter topic with the
reason and their source coordinates in headers, so they never block a partition. When LogFlow's
queue refuses the whole batch (QueueFull, StorageFull, BackendUnavailable), nothing is committed:
the consumer seeks back to the batch's first offsets and reads it again after a back-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from logflow.backends.errors import BackendError, BackendUnavailable, QueueFull, StorageFull
from logflow.backends.queue.base import DeadLetter
from logflow.backends.queue.kafka.config import AT_MS_HEADER, REASON_HEADER, KafkaOptions, parse_kafka_url
from logflow.backends.queue.kafka.diagnostics import ThrottledLog, describe
from logflow.ingest.decode import BodyError, DecodedItem, decode_json_items
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError
from logflow.runtime import Runtime
from logflow.settings import Settings

log = logging.getLogger("logflow.kafka_source")

# Attributes every event from this source carries (top-level, so `field=kafka.topic:orders` finds
# them). Message headers are not kept: they are often binary and would count against max_fields.
ATTR_TOPIC = "kafka.topic"
ATTR_PARTITION = "kafka.partition"
ATTR_OFFSET = "kafka.offset"
ATTR_KEY = "kafka.key"  # only when the message has a key that is valid UTF-8
# Headers of a dead letter written by this source, next to the queue's reason and time headers.
SOURCE_TOPIC_HEADER = "logflow-source-topic"
SOURCE_PARTITION_HEADER = "logflow-source-partition"
SOURCE_OFFSET_HEADER = "logflow-source-offset"
SOURCE_ITEM_HEADER = "logflow-source-item"  # index of the item, when one message held several

_TIMESTAMP_KEYS = ("timestamp", "@timestamp", "time", "ts")  # what normalize() reads, in its order
_ID_MAX = 128
_MAX_BACKOFF_S = 30.0
_DEAD_LETTER_TIMEOUT_S = 15.0


class SourceConfigError(ValueError):
    """The source cannot run with this configuration; the message says what to set."""


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where to consume from: brokers (+ librdkafka options), topics and consumer group."""

    servers: str
    extra: dict[str, str]
    topics: tuple[str, ...]
    group: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SourceConfig:
        """From ``kafka_source_{url,topics,group}``; the URL defaults to the brokers of ``queue_url``.

        Refuses an embedded queue without a source URL (there are no brokers to default to) and a
        source topic that is LogFlow's own event or dead-letter topic on the same cluster (a loop).
        """
        topics = tuple(dict.fromkeys(t.strip() for t in settings.kafka_source_topics.split(",") if t.strip()))
        if not topics:
            raise SourceConfigError("no source topics: set LOGFLOW_KAFKA_SOURCE_TOPICS (comma-separated) "
                                    "or pass --topics")
        queue_is_kafka = settings.queue_url.startswith("kafka://")
        url = settings.kafka_source_url or (settings.queue_url if queue_is_kafka else "")
        if not url:
            raise SourceConfigError(
                "the Kafka source needs brokers: LogFlow's queue is embedded, so name the cluster to "
                "consume from with --source-url / LOGFLOW_KAFKA_SOURCE_URL=kafka://host:port"
            )
        try:
            servers, extra = parse_kafka_url(url)
        except ValueError as exc:
            raise SourceConfigError(f"LOGFLOW_KAFKA_SOURCE_URL: {exc}") from None
        if queue_is_kafka and servers == parse_kafka_url(settings.queue_url)[0]:
            own = {settings.kafka_topic, settings.kafka_dead_letter_topic} & set(topics)
            if own:
                raise SourceConfigError(f"source topic(s) {sorted(own)} are LogFlow's own queue topics; "
                                        "consuming them would feed LogFlow its own output")
        if not settings.kafka_source_group:
            raise SourceConfigError("LOGFLOW_KAFKA_SOURCE_GROUP must not be empty")
        return cls(servers=servers, extra=extra, topics=topics, group=settings.kafka_source_group)


def source_event_id(topic: str, partition: int, offset: int, item: int | None = None) -> str:
    """The event id of an item without its own: stable across redeliveries of the same message."""
    suffix = f":{partition}:{offset}" + ("" if item is None else f":{item}")
    readable = f"kafka:{topic}{suffix}"
    if len(readable) <= _ID_MAX:
        return readable  # Kafka topic names only use [A-Za-z0-9._-], all valid in event ids
    return f"kafka:{hashlib.sha256(topic.encode()).hexdigest()[:40]}{suffix}"


@dataclass(slots=True)
class _Entry:
    """One item of a batch and the message it came from (for its dead letter, if any)."""

    item: DecodedItem
    message: Message
    position: int | None  # index within its message when the message held several items


def message_items(message: Message, limits: IngestLimits) -> list[_Entry]:
    """The items of one message, mapped like a native JSON ingest plus the source's fallbacks."""
    topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
    value = message.value() or b""
    try:
        if len(value) > limits.max_body_bytes:
            raise BodyError(413, f"message is larger than {limits.max_body_bytes} bytes")
        items = decode_json_items(value, "application/json", limits)
    except BodyError as exc:
        # Its reasons speak of an HTTP body ("body is not valid JSON: …"): here it is a message.
        reason = exc.reason.replace("body", "message", 1)
        return [_Entry(DecodedItem(index=0, error=ItemError(exc.code, reason)), message, None)]
    several = len(items) > 1
    ts_type, ts_ms = message.timestamp()
    key = message.key()
    extra: dict[str, Any] = {ATTR_TOPIC: topic, ATTR_PARTITION: partition, ATTR_OFFSET: offset}
    if key:
        with contextlib.suppress(UnicodeDecodeError):  # a binary key is not kept
            extra[ATTR_KEY] = key.decode("utf-8")
    entries = []
    for i, item in enumerate(items):
        if isinstance(item.value, dict) and item.error is None:
            doc = item.value
            if doc.get("id") is None:
                doc["id"] = source_event_id(topic, partition, offset, i if several else None)
            if ts_ms > 0 and ts_type != 0 and all(doc.get(k) is None for k in _TIMESTAMP_KEYS):
                # The producer's (or broker's) time: better than ours, and the same on redelivery.
                doc["timestamp"] = ts_ms
            for name, attr in extra.items():
                doc.setdefault(name, attr)
        entries.append(_Entry(item, message, i if several else None))
    return entries


@dataclass(slots=True)
class SourceCounters:
    """Running totals for the status line."""

    messages: int = 0
    accepted: int = 0
    dead_letters: int = 0
    batches: int = 0
    retries: int = 0
    last_error: str = ""
    assigned: set[tuple[str, int]] = field(default_factory=set)

    def line(self) -> str:
        text = (f"kafka-source: {self.messages} messages, {self.accepted} events queued, "
                f"{self.dead_letters} dead-lettered, {self.retries} retries, "
                f"{len(self.assigned)} partition(s) assigned")
        return text + (f"; last error: {self.last_error}" if self.last_error else "")


class _DeadLetters:
    """Writes rejected items to LogFlow's dead-letter place, waiting until it has them.

    With the Kafka queue: a record on ``kafka_dead_letter_topic`` (value: what the producer sent;
    headers: reason, time, source topic/partition/offset[/item]), read back by the queue's
    ``read_dead_letters`` like any other. With the embedded queue: its own dead-letter file, the
    source coordinates appended to the reason.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._producer: Producer | None = None
        settings = runtime.settings
        self._to_kafka = runtime.queue.kind == "kafka"
        if self._to_kafka:
            servers, extra = parse_kafka_url(settings.queue_url)
            self._topic = settings.kafka_dead_letter_topic
            options = KafkaOptions(servers, client_id="logflow-source-dlq", extra=extra)
            self._producer = Producer(options.producer(self._on_error))
        self._errors = ThrottledLog(log)

    def send(self, letters: Sequence[tuple[_Entry, str]]) -> None:
        """Raises BackendUnavailable unless every letter is stored."""
        if not letters:
            return
        now_ms = int(time.time() * 1000)
        if not self._to_kafka:
            self._runtime.queue.dead_letter([
                DeadLetter(_payload(entry), f"{reason} [{_where(entry)}]", now_ms) for entry, reason in letters
            ])
            return
        producer = self._producer
        if producer is None:
            raise BackendUnavailable("the dead-letter producer is closed")
        failures: list[str] = []

        def report(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                failures.append(describe(error))

        try:
            for entry, reason in letters:
                message = entry.message
                headers: list[tuple[str, str | bytes | None]] = [
                    (REASON_HEADER, reason.encode()), (AT_MS_HEADER, str(now_ms).encode()),
                    (SOURCE_TOPIC_HEADER, (message.topic() or "").encode()),
                    (SOURCE_PARTITION_HEADER, str(message.partition()).encode()),
                    (SOURCE_OFFSET_HEADER, str(message.offset()).encode()),
                ]
                if entry.position is not None:
                    headers.append((SOURCE_ITEM_HEADER, str(entry.position).encode()))
                producer.produce(self._topic, _payload(entry), on_delivery=report, headers=headers)
        except (KafkaException, BufferError) as exc:
            raise BackendUnavailable(f"cannot produce dead letters to {self._topic!r}: {describe(exc)}") from exc
        left = producer.flush(_DEAD_LETTER_TIMEOUT_S)
        if left or failures:
            raise BackendUnavailable(f"{left + len(failures)} of {len(letters)} dead letters not acknowledged "
                                     f"by {self._topic!r}: {failures[0] if failures else 'timed out'}")

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(_DEAD_LETTER_TIMEOUT_S)  # send() already waited; this only tidies up

    def _on_error(self, error: KafkaError) -> None:
        self._errors.warning(error.code(), "Kafka source dead-letter producer: %s", describe(error))


def _payload(entry: _Entry) -> bytes:
    """The single item of a several-item message when it parsed, else the message value as sent."""
    if entry.position is not None and entry.item.value is not None:
        return orjson.dumps(entry.item.value)
    return entry.message.value() or b""


def _where(entry: _Entry) -> str:
    m = entry.message
    item = "" if entry.position is None else f" item {entry.position}"
    return f"kafka {m.topic()}/{m.partition()}@{m.offset()}{item}"


class KafkaSource:
    """One member of the source consumer group: consume → pipeline → dead letters → commit.

    Run :meth:`run` in one thread; several instances (threads or processes) with the same group
    share the topics' partitions. Setting the ``stop`` event lets the in-flight batch finish and
    commit before the consumer leaves the group.
    """

    def __init__(self, runtime: Runtime, config: SourceConfig, *, batch_size: int = 1000,
                 poll_timeout_s: float = 0.5) -> None:
        self.runtime = runtime
        self.config = config
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.counters = SourceCounters()
        self._limits = runtime.pipeline.limits
        self._errors = ThrottledLog(log)
        self._dead = _DeadLetters(runtime)
        options = KafkaOptions(config.servers, client_id="logflow-source", extra=config.extra)
        try:
            self._consumer = Consumer(options.consumer(config.group))
            self._consumer.subscribe(list(config.topics), on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_revoke)
        except KafkaException as exc:
            raise BackendUnavailable(f"cannot create the Kafka source consumer: {describe(exc)}") from exc

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; closes the consumer (leaving the group) at the end."""
        backoff = 0.5
        log.info("kafka source consuming %s as group %s from %s", ",".join(self.config.topics),
                 self.config.group, self.config.servers)
        try:
            while not stop.is_set():
                messages = self._poll()
                if not messages:
                    continue
                try:
                    self._handle(messages)
                    backoff = 0.5
                except BackendError as exc:
                    # LogFlow's queue (or the commit) failed: nothing of this batch is committed.
                    # Read it again from its first offsets after a pause; ids make it idempotent.
                    self.counters.retries += 1
                    self.counters.last_error = f"{type(exc).__name__}: {exc}"
                    pause = float(exc.retry_after_s) if isinstance(exc, QueueFull | StorageFull) else backoff
                    log.warning("kafka source: %s; retrying the batch in %.1fs", exc, pause)
                    self._seek_back(messages)
                    stop.wait(pause)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group (its partitions move to other members) and flush dead letters."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: already closed
            log.debug("closing the Kafka source consumer: %s", describe(exc))
        self._dead.close()

    # -- internals ----------------------------------------------------------------------------

    def _poll(self) -> list[Message]:
        try:
            # Wait for the first message only, then take what is already fetched: a batch under
            # load, no waiting for a full one when the topic is quiet.
            messages = self._consumer.consume(1, self.poll_timeout_s)
            if messages and self.batch_size > 1:
                messages += self._consumer.consume(self.batch_size - 1, 0)
        except KafkaException as exc:
            self._errors.warning(-1, "kafka source: consume failed: %s", describe(exc))
            return []
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.fatal():
                raise BackendUnavailable(f"Kafka source consumer failed: {describe(error)}")
            elif error.code() != KafkaError._PARTITION_EOF:
                # Transient (broker down, topic not created yet): librdkafka retries by itself.
                self._errors.warning(error.code(), "kafka source: %s", describe(error))
        return good

    def _handle(self, messages: list[Message]) -> None:
        entries = [entry for message in messages for entry in message_items(message, self._limits)]
        for index, entry in enumerate(entries):
            entry.item.index = index
        outcome = self.runtime.pipeline.submit([entry.item for entry in entries])
        letters = [(entries[r.index], r.error or "rejected") for r in outcome.results if r.status != "accepted"]
        self._dead.send(letters)
        self._commit(messages)
        c = self.counters
        c.batches += 1
        c.messages += len(messages)
        c.accepted += outcome.accepted
        c.dead_letters += len(letters)

    def _commit(self, messages: list[Message]) -> None:
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            tp = (m.topic() or "", m.partition() or 0)
            ends[tp] = max(ends.get(tp, 0), (m.offset() or 0) + 1)
        # A partition revoked since the batch was read belongs to another member now, which
        # starts from the last committed offset: committing here could only rewind its progress.
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items() if (t, p) in self.counters.assigned]
        if not offsets:
            return
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except (KafkaException, RuntimeError) as exc:
            raise BackendUnavailable(f"Kafka source commit failed: {describe(exc)}") from exc
        failed = [f"{tp.topic}/{tp.partition}: {describe(tp.error)}" for tp in results or [] if tp.error]
        if failed:
            raise BackendUnavailable("Kafka source commit failed for " + "; ".join(failed))

    def _seek_back(self, messages: list[Message]) -> None:
        starts: dict[tuple[str, int], int] = {}
        for m in messages:
            tp = (m.topic() or "", m.partition() or 0)
            starts[tp] = min(starts.get(tp, m.offset() or 0), m.offset() or 0)
        for (topic, partition), offset in starts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Revoked meanwhile: the new owner starts from the committed offset anyway.
                log.debug("kafka source: seek %s/%d skipped: %s", topic, partition, describe(exc))

    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.counters.assigned.update((tp.topic, tp.partition) for tp in partitions)
        log.info("kafka source: assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self.counters.assigned.difference_update((tp.topic, tp.partition) for tp in partitions)
        log.info("kafka source: revoked %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))
