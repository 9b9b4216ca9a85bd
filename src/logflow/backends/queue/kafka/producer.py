"""An idempotent producer whose ``send`` returns only once Kafka acknowledged every record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.kafka.config import KafkaOptions
from logflow.backends.queue.kafka.diagnostics import ThrottledLog, describe

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]  # what confluent_kafka takes
OutRecord = tuple[bytes | None, bytes, Headers | None]  # key, value, headers

# librdkafka checks message timeouts about once a second: give it that long, plus a margin,
# before a publish gives up on its own.
_DELIVERY_GRACE_S = 2.0


class _Delivery:
    """Delivery reports of one ``send``. Reports may arrive on any thread that polls the producer."""

    __slots__ = ("_lock", "_pending", "done", "failed", "failed_partitions", "first_error")

    def __init__(self, expected: int) -> None:
        self._lock = threading.Lock()
        self._pending = expected
        self.done = threading.Event()
        self.failed = 0
        self.first_error = ""
        self.failed_partitions: set[int] = set()
        if expected == 0:
            self.done.set()

    @property
    def pending(self) -> int:
        return self._pending

    def report(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is not None:
                self.failed += 1
                if not self.first_error:
                    self.first_error = describe(error)
                partition = message.partition()
                if partition is not None and partition >= 0:
                    self.failed_partitions.add(partition)
            self._pending -= 1
            if self._pending == 0:
                self.done.set()


class ReliableProducer:
    """One idempotent, ``acks=all`` producer shared by every publishing thread of a process.

    The owner runs :meth:`serve` in a background thread: it delivers the delivery reports, so a
    publisher only waits on its own records (``flush`` would wait for everybody's). The producer
    is created on first use (a consume-only process never opens one). After a fatal error (an
    idempotent producer can lose its sequence state for good, e.g. after broker data loss) the
    next ``send`` replaces it instead of failing forever.
    """

    def __init__(self, options: KafkaOptions) -> None:
        self._options = options
        self._timeout_s = options.delivery_timeout_s + _DELIVERY_GRACE_S
        self._errors = ThrottledLog(log)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._fatal = ""
        self._closed = threading.Event()

    @property
    def fatal_error(self) -> str:
        """The fatal error that will make the next ``send`` start a new producer ("" if none)."""
        return self._fatal

    def send(self, topic: str, records: Iterable[OutRecord], count: int) -> None:
        """Produce ``count`` records and wait until Kafka acknowledged all of them.

        Raises BackendUnavailable naming the topic, how many records failed and the first error
        when any record is refused, or when not all were acknowledged in time.
        """
        producer = self._current()
        delivery = _Delivery(count)
        deadline = time.monotonic() + self._timeout_s
        produce, report = producer.produce, delivery.report
        for key, value, headers in records:
            while True:
                try:
                    produce(topic, value, key, on_delivery=report, headers=headers)
                    break
                except BufferError:
                    # The local queue is full (many concurrent publishes): wait for deliveries to
                    # make room, but not past this publish's deadline.
                    if time.monotonic() >= deadline:
                        raise BackendUnavailable(
                            f"Kafka producer queue stayed full for {self._timeout_s:.0f}s; "
                            f"{topic!r} is not keeping up"
                        ) from None
                    producer.poll(0.01)
                except KafkaException as exc:
                    raise BackendUnavailable(
                        f"cannot produce to Kafka topic {topic!r}: {describe(exc)}"
                    ) from exc
        if not delivery.done.wait(max(0.0, deadline - time.monotonic())):
            raise BackendUnavailable(
                f"Kafka did not acknowledge {delivery.pending} of {count} records to {topic!r} within "
                f"{self._timeout_s:.0f}s ({delivery.first_error or 'brokers unreachable?'})"
            )
        if delivery.failed:
            partitions = ", ".join(map(str, sorted(delivery.failed_partitions))) or "none assigned"
            raise BackendUnavailable(
                f"Kafka refused {delivery.failed} of {count} records to {topic!r} "
                f"(partitions {partitions}): {delivery.first_error}"
            )

    def serve(self, timeout_s: float) -> None:
        """Run delivery reports (and error callbacks) for up to ``timeout_s``; call in a loop."""
        producer = self._producer
        if producer is None:
            self._closed.wait(timeout_s)
        else:
            producer.poll(timeout_s)

    def close(self) -> None:
        """Deliver what is still queued (bounded by the delivery timeout). Stop :meth:`serve` first."""
        self._closed.set()
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            left = producer.flush(self._timeout_s)
            if left:
                # Their publishers have given up already (same deadline); don't let close() wait.
                log.warning("Kafka producer closed with %d undelivered record(s)", left)
                producer.purge(blocking=False)
                producer.flush(1.0)
            producer.close()

    # -- internals ----------------------------------------------------------------------------

    def _current(self) -> Producer:
        with self._lock:
            if self._closed.is_set():
                raise BackendUnavailable("Kafka queue is closed")
            if self._producer is not None and not self._fatal:
                return self._producer
            old, self._fatal = self._producer, ""
            try:
                producer = Producer(self._options.producer(self._on_error))
            except KafkaException as exc:  # a bad librdkafka option in the URL, say
                raise BackendUnavailable(f"cannot create Kafka producer: {describe(exc)}") from exc
            self._producer = producer
        if old is not None:
            log.warning("replacing the Kafka producer after a fatal error")
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.flush(1.0)  # fails the purged records' deliveries, so their publishers learn now
            # Not old.close(): serve() may still be polling it; it is freed once nobody holds it.
        return producer

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("Kafka producer fatal error: %s", describe(error))
            self._fatal = describe(error)
        else:
            # Mostly transport errors while a broker is down: librdkafka retries by itself.
            self._errors.warning(error.code(), "Kafka producer: %s", describe(error))
