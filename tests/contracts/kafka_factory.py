"""Builds isolated Kafka queues for the queue contract tests (and cleans up after them).

Each queue gets its own topics and consumer-group prefix, so contract tests that reuse group
names such as ``"g"`` never share offsets or rebalance with each other, even across runs.
"""

from __future__ import annotations

import uuid

from logflow.backends.queue.base import EventQueue
from logflow.backends.queue.kafka import KafkaQueue, parse_kafka_url
from logflow.bench.cleanup import drop_kafka

CONTRACT_PARTITIONS = 3  # more than one, so per-key order across partitions is exercised


def make_kafka_queue(url: str) -> EventQueue:
    """A fresh, empty Kafka queue on the cluster at ``url`` (``kafka://host:port``)."""
    servers, extra = parse_kafka_url(url)
    unique = f"lf-contract-{uuid.uuid4().hex[:12]}"
    return KafkaQueue(
        servers,
        topic=unique,
        dead_letter_topic=f"{unique}-dlq",
        partitions=CONTRACT_PARTITIONS,
        group_prefix=f"{unique}.",
        extra_config=extra,
    )


def delete_topics(url: str, queue: EventQueue, timeout_s: float = 30.0) -> None:
    """Delete the topics and consumer groups of a queue from :func:`make_kafka_queue` (close it first)."""
    if not isinstance(queue, KafkaQueue):
        raise TypeError(f"not a Kafka queue: {queue!r}")
    drop_kafka(url, [queue.topic, queue.dead_letter_topic], sorted(queue.groups), timeout_s)
