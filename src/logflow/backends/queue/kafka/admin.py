"""Cluster-side helpers: topic creation, watermarks and committed offsets, all time-bounded."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without marking them public for type checkers: import
# them from where they are defined.
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.admin._metadata import ClusterMetadata
from confluent_kafka.cimpl import NewTopic

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.kafka.diagnostics import describe, kafka_error

log = logging.getLogger(__name__)

_LEADER_POLL_S = 0.1
_T = TypeVar("_T")
_LEADER_MOVING = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REPLICA_NOT_AVAILABLE,
})
# OffsetSpec's factories carry no annotations (confluent-kafka 2.16): pin their type once here.
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Watermarks:
    """Offsets of a partition's oldest kept record (``low``) and of the next one to be written."""

    low: int
    high: int


class Deadline:
    """What is left of a time budget, for chaining several bounded calls."""

    def __init__(self, seconds: float) -> None:
        self.total = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        # A floor: librdkafka treats 0 as "do not wait at all" and fails at once.
        return max(0.05, self._end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._end


def _result(future: Future[_T], deadline: Deadline, what: str) -> _T:
    try:
        return future.result(timeout=deadline.left())
    except FutureTimeout:
        raise BackendUnavailable(f"Kafka did not answer {what} within {deadline.total:.0f}s") from None
    except KafkaException as exc:
        raise BackendUnavailable(f"Kafka {what} failed: {describe(exc)}") from exc


def cluster_metadata(admin: AdminClient, deadline: Deadline) -> ClusterMetadata:
    """Brokers and topics, or BackendUnavailable once the deadline passes."""
    try:
        return admin.list_topics(timeout=deadline.left())
    except KafkaException as exc:
        raise BackendUnavailable(f"Kafka cluster unreachable: {describe(exc)}") from exc


def partitions_of(metadata: ClusterMetadata, topic: str) -> list[int] | None:
    """The topic's partition ids, or None when the topic does not exist."""
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return sorted(found.partitions)


def ensure_topics(
    admin: AdminClient, topics: Iterable[str], partitions: int, *, probe_s: float, create_s: float
) -> None:
    """Create the missing ones of ``topics`` and wait until every partition has a leader.

    An unreachable cluster fails after ``probe_s``; creating topics may take up to ``create_s``
    more (a controller election, say). Replication factor is min(3, brokers); with three
    replicas, ``min.insync.replicas=2`` so that ``acks=all`` means two copies even while one
    broker is down. An existing topic is left as it is: adding partitions would move keys to
    other partitions and break per-key order.
    """
    metadata = cluster_metadata(admin, Deadline(probe_s))
    deadline = Deadline(create_s)
    wanted = list(dict.fromkeys(topics))
    missing = [t for t in wanted if partitions_of(metadata, t) is None]
    for topic in wanted:
        have = partitions_of(metadata, topic)
        if have is not None and len(have) != partitions:
            log.warning("Kafka topic %s has %d partitions (configured: %d); leaving it as it is",
                        topic, len(have), partitions)
    if missing:
        replicas = max(1, min(3, len(metadata.brokers)))
        config = {"min.insync.replicas": "2"} if replicas >= 3 else {}
        new = [NewTopic(t, num_partitions=partitions, replication_factor=replicas, config=config)
               for t in missing]
        futures = admin.create_topics(new, request_timeout=deadline.left(), operation_timeout=deadline.left())
        for topic, future in futures.items():
            try:
                _result(future, deadline, f"creating topic {topic!r}")
                log.info("created Kafka topic %s (%d partitions, replication factor %d)",
                         topic, partitions, replicas)
            except BackendUnavailable as exc:
                error = kafka_error(exc.__cause__)
                if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise  # another process creating it at the same time is fine; anything else not
        _wait_for_leaders(admin, missing, deadline)


def _wait_for_leaders(admin: AdminClient, topics: list[str], deadline: Deadline) -> None:
    # Metadata propagates to brokers shortly after CreateTopics returns; a consumer subscribing
    # before that would only notice the topic at its next metadata refresh (minutes).
    while True:
        metadata = cluster_metadata(admin, deadline)
        pending = []
        for topic in topics:
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions or any(
                p.leader < 0 for p in found.partitions.values()
            ):
                pending.append(topic)
        if not pending:
            return
        if deadline.expired():
            raise BackendUnavailable(f"Kafka topic(s) {', '.join(pending)} have no leader yet")
        time.sleep(_LEADER_POLL_S)


def watermarks(
    admin: AdminClient, partitions: dict[str, list[int]], deadline: Deadline
) -> dict[tuple[str, int], Watermarks]:
    """Low and high watermark of every listed partition, in two batched requests.

    Retried within the deadline while a leader is moving (e.g. just after the topic was
    created, the broker may not act as leader yet although metadata already names it).
    """
    tps = [TopicPartition(topic, p) for topic, ids in partitions.items() for p in ids]
    if not tps:
        return {}
    while True:
        try:
            lows = admin.list_offsets({tp: _EARLIEST for tp in tps}, request_timeout=deadline.left())
            highs = admin.list_offsets({tp: _LATEST for tp in tps}, request_timeout=deadline.left())
            low = {(tp.topic, tp.partition): _result(f, deadline, "offsets").offset for tp, f in lows.items()}
            high = {(tp.topic, tp.partition): _result(f, deadline, "offsets").offset
                    for tp, f in highs.items()}
            return {key: Watermarks(int(low[key]), int(high[key])) for key in low}
        except BackendUnavailable as exc:
            error = kafka_error(exc.__cause__)
            if error is None or error.code() not in _LEADER_MOVING or deadline.expired():
                raise
            time.sleep(_LEADER_POLL_S)


def committed_offsets(admin: AdminClient, group: str, topic: str, partitions: list[int],
                      deadline: Deadline) -> dict[int, int]:
    """The group's committed offset per partition; partitions it never committed are left out."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    futures = admin.list_consumer_group_offsets([request], request_timeout=deadline.left())
    answer = _result(futures[group], deadline, f"committed offsets of group {group!r}")
    return {
        tp.partition: int(tp.offset)
        for tp in answer.topic_partitions or []
        if tp.error is None and tp.offset >= 0
    }


def delete_topics(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """Delete ``topics`` (missing ones are fine)."""
    deadline = Deadline(timeout_s)
    for topic, future in admin.delete_topics(topics, operation_timeout=deadline.left()).items():
        try:
            _result(future, deadline, f"deleting topic {topic!r}")
        except BackendUnavailable as exc:
            error = kafka_error(exc.__cause__)
            if error is None or error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def delete_groups(admin: AdminClient, groups: list[str], timeout_s: float) -> None:
    """Delete consumer groups (best effort: an active or unknown group is only logged)."""
    if not groups:
        return
    deadline = Deadline(timeout_s)
    for group, future in admin.delete_consumer_groups(groups, request_timeout=deadline.left()).items():
        try:
            _result(future, deadline, f"deleting group {group!r}")
        except BackendUnavailable as exc:
            log.info("%s", exc)
