"""Connection URL parsing and the librdkafka settings every LogFlow Kafka client uses.

Kept apart from the clients so the tuning is in one place and reads as a table, with the reason
for each value next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from confluent_kafka import KafkaError

from logflow.backends.queue.kafka.diagnostics import CLIENT_LOG

# Headers of a dead letter (the value is the refused payload itself).
REASON_HEADER = "logflow-reason"
AT_MS_HEADER = "logflow-at-ms"

ClientConfig = dict[str, Any]  # what confluent_kafka's constructors take (values: str/int/bool/callables)


def parse_kafka_url(url: str) -> tuple[str, dict[str, str]]:
    """``kafka://h1:p1[,h2:p2][?librdkafka.option=value&...]`` → (bootstrap servers, extra options).

    The query string passes librdkafka options through unchanged (e.g. ``security.protocol``,
    ``sasl.mechanism``), so a secured cluster needs no new LogFlow setting. A host without a port
    gets Kafka's default 9092. Raises ValueError with the offending part.
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ValueError(f"not a kafka:// URL: {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"kafka URL takes no path (got {parts.path!r} in {url!r})")
    servers = []
    for item in parts.netloc.split(","):
        item = item.strip()
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port:  # no port, or only the inside of an IPv6 literal
            host, port = item, "9092"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid Kafka broker {item!r} in {url!r}: expected host:port")
        servers.append(f"{host}:{port}")
    return ",".join(servers), dict(parse_qsl(parts.query, keep_blank_values=True))


@dataclass(frozen=True)
class KafkaOptions:
    """Everything the clients share: where the cluster is and how long to wait for it."""

    bootstrap_servers: str
    client_id: str = "logflow"
    # Upper bound for a record's delivery (librdkafka message.timeout.ms): a publish to a dead
    # cluster fails after this instead of hanging; ingest turns that into a 503.
    delivery_timeout_s: float = 10.0
    # Bound for metadata/admin round trips in stats() and topic creation: /health must answer.
    admin_timeout_s: float = 3.0
    extra: Mapping[str, str] = field(default_factory=dict)

    def common(self, error_cb: Callable[[KafkaError], None] | None = None) -> ClientConfig:
        config: ClientConfig = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            # librdkafka's log lines go to Python logging (rate-limited) instead of stderr.
            "logger": CLIENT_LOG,
            # A blackholed broker address is given up after 5 s (default 30 s), so the client
            # moves on to the next bootstrap server sooner.
            "socket.connection.setup.timeout.ms": 5_000,
            "reconnect.backoff.max.ms": 2000,
        }
        if error_cb is not None:
            config["error_cb"] = error_cb
        config.update(self.extra)
        return config

    def producer(self, error_cb: Callable[[KafkaError], None]) -> ClientConfig:
        timeout_ms = int(self.delivery_timeout_s * 1000)
        config = self.common(error_cb)
        config.update({
            # Durability: a record counts as published only once every in-sync replica has it,
            # and retries never duplicate or reorder it within its partition.
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": timeout_ms,
            "request.timeout.ms": min(timeout_ms, 30_000),
            # Java-client-compatible key hashing, so other tools (Streams, Connect) agree on where
            # a service's records live; unlike the default it also hashes an empty key.
            "partitioner": "murmur2_random",
            # Throughput: ingest publishes thousands of ~400 B records at once. lz4 costs little
            # CPU and shrinks JSON log lines ~3x; a short linger lets concurrent publishes share
            # broker requests, and large batches keep the per-request overhead small.
            "compression.type": "lz4",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            # Room for many concurrent ingest requests (each waits for its own records) before
            # produce() pushes back; memory is capped by queue.buffering.max.kbytes.
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        })
        config.update(self.extra)
        return config

    def consumer(self, group: str) -> ClientConfig:
        config = self.common()
        config.update({
            "group.id": group,
            # The processor commits explicitly, after the store has the batch.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # A new group starts at the oldest kept record, like the embedded queue.
            "auto.offset.reset": "earliest",
            # Incremental rebalancing: when a processor joins or leaves, only the partitions that
            # move are revoked; the others keep flowing, and fewer in-flight batches are redone.
            "partition.assignment.strategy": "cooperative-sticky",
            # A crashed processor's partitions move to the others after 10 s, not 45 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            # A synchronous commit to an unreachable coordinator fails in bounded time.
            "socket.timeout.ms": 10_000,
            # A processor that subscribed before the topic existed (cluster down at its start)
            # notices it within 30 s instead of the default 5 min.
            "topic.metadata.refresh.interval.ms": 30_000,
        })
        config.update(self.extra)
        return config

    def reader(self) -> ClientConfig:
        """A consumer that only assign()s partitions (dead-letter reads): no group, no commits."""
        config = self.common()
        config.update({
            "group.id": f"{self.client_id}-reader",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,  # tells us when a partition's end was reached
            # An assigned offset that retention deleted meanwhile: read from the oldest kept one
            # (the default, "latest", would skip the partition's letters without a word).
            "auto.offset.reset": "earliest",
        })
        config.update(self.extra)
        return config

    def replay(self, group: str) -> ClientConfig:
        """A consumer that assign()s the dead-letter partitions and commits for replay group ``group``."""
        config = self.reader()
        config.update({"group.id": group, "socket.timeout.ms": 10_000})
        config.update(self.extra)
        return config

    def admin(self) -> ClientConfig:
        return self.common()
