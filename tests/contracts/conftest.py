"""Fixtures that build each implementation of a port, so one contract test runs against all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logflow.backends.queue.base import EventQueue
from logflow.backends.queue.embedded import EmbeddedQueue
from tests.conftest import require_engine
from tests.contracts.kafka_factory import delete_topics, make_kafka_queue

# Builds a fresh, empty queue; ``max_backlog_bytes`` (None: the implementation's default) is the
# backlog beyond which publish raises QueueFull.
QueueFactory = Callable[..., EventQueue]


def _embedded(path: Path, max_backlog_bytes: int | None) -> EventQueue:
    return EmbeddedQueue(
        path,
        max_backlog_bytes=max_backlog_bytes if max_backlog_bytes is not None else 1 << 30,
        min_free_disk_bytes=0,  # the contract is not about the disk reserve; keep full CI disks out
        segment_bytes=64 * 1024,  # small, so the tests cross segment boundaries and delete segments
    )


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.distributed)])
def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueFactory]:
    """One factory per queue implementation: the embedded segment log and real Kafka."""
    made: list[EventQueue] = []
    url = require_engine("kafka") if request.param == "kafka" else ""

    def make(*, max_backlog_bytes: int | None = None) -> EventQueue:
        if request.param == "kafka":
            if max_backlog_bytes is not None:
                pytest.skip("Kafka has no backlog limit of LogFlow's: the broker's retention bounds it")
            queue = make_kafka_queue(url)
        else:
            queue = _embedded(tmp_path / f"queue{len(made)}", max_backlog_bytes)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()
        if request.param == "kafka":
            delete_topics(url, queue)
