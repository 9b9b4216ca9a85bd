"""``--engine-cpus`` on the real engines: the OpenSearch node and the Kafka broker of the test stack
are found, pinned to their sides of the split while a run lasts, and put back afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logflow.bench.cpus import pinned, plan_split
from tests.conftest import require_engine
from tests.unit.test_bench_cpus import allowed_cpus

pytestmark = pytest.mark.distributed


def test_the_engine_and_the_broker_are_pinned_to_their_sides_and_put_back() -> None:
    queue_url, store_url = require_engine("kafka"), require_engine("opensearch")
    available = frozenset(os.sched_getaffinity(0))
    assert len(available) >= 2, "a split needs two CPUs"
    split = plan_split(store_url, queue_url, frozenset({max(available)}))
    assert split.kafka_pid is not None and split.kafka_pid != split.engine_pid
    assert b"kafka" in Path(f"/proc/{split.kafka_pid}/cmdline").read_bytes()
    engine_before, broker_before = allowed_cpus(split.engine_pid), allowed_cpus(split.kafka_pid)
    with pinned(split):
        assert set(allowed_cpus(split.engine_pid).values()) == {split.engine_cpus}
        assert set(allowed_cpus(split.kafka_pid).values()) == {split.logflow_cpus}
        assert frozenset(os.sched_getaffinity(0)) == split.logflow_cpus
    for pid, before in ((split.engine_pid, engine_before), (split.kafka_pid, broker_before)):
        after = allowed_cpus(pid)
        assert after == {tid: before.get(tid, before[pid]) for tid in after}
    assert frozenset(os.sched_getaffinity(0)) == available
