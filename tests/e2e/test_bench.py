"""``logflow bench`` as a user runs it: real processes, a report, and nothing left behind on shared engines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from logflow.backends.queue.kafka.config import KafkaOptions, parse_kafka_url
from logflow.backends.store.opensearch.client import parse_store_url
from logflow.bench.cpus import engine_pid, kafka_pid
from tests.conftest import REPO, require_engine
from tests.unit.test_bench_cpus import allowed_cpus

EVENTS = 3000


def _bench(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    report = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, "-m", "logflow", "bench", "--events", str(EVENTS), "--batch", "1000", "--repeat", "2",
         "--work-dir", str(tmp_path / "work"), "--markdown", str(report), *args],
        env=env, cwd=REPO, capture_output=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return report.read_text()


def _figure(report: str, measure: str) -> str:
    found = re.search(rf"^\| {re.escape(measure)} \| ([^|]+) \|$", report, re.MULTILINE)
    assert found is not None, f"no {measure!r} line in:\n{report}"
    return found.group(1).strip()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LOGFLOW_") or k.startswith("LOGFLOW_TEST_")}


def _bench_leftovers(queue_url: str, store_url: str) -> tuple[set[str], set[str]]:
    """Topics and indices whose names a bench run gives them."""
    servers, extra = parse_kafka_url(queue_url)
    topics = AdminClient(KafkaOptions(servers, extra=extra).admin()).list_topics(timeout=10).topics
    endpoint = parse_store_url(store_url)
    answer = httpx.get(f"{endpoint.base_url}/_cat/indices/bench-*", params={"format": "json", "h": "index"},
                       auth=endpoint.auth, timeout=30)
    answer.raise_for_status()
    return {t for t in topics if t.startswith("bench-")}, {row["index"] for row in answer.json()}


def test_embedded_bench_reports_every_event_stored(tmp_path: Path) -> None:
    report = _bench(tmp_path, _clean_env())
    stored = int(_figure(report, "documents stored").replace(",", ""))
    # The dataset, its 10 rare-term events, the warm-up event and the visibility probes.
    assert EVENTS <= stored <= EVENTS + 100
    assert _figure(report, "rejected / 503-507 retries") == "0 / 0"
    assert "logflow bench --shape embedded --events 3000" in report
    assert _figure(report, "CPUs") == f"all {len(os.sched_getaffinity(0))} shared by every process"


@pytest.mark.distributed
def test_distributed_bench_measures_the_ceiling_and_leaves_nothing_behind(tmp_path: Path) -> None:
    queue_url, store_url = require_engine("kafka"), require_engine("opensearch")
    # Metadata and cache stay local (SQLite in the run's directory): the bench logs in as its own admin.
    env = {**_clean_env(), "LOGFLOW_QUEUE_URL": queue_url, "LOGFLOW_STORE_URL": store_url}
    before = _bench_leftovers(queue_url, store_url)
    cpus = sorted(os.sched_getaffinity(0))
    assert len(cpus) >= 2, "the distributed bench gives the engine a CPU of its own: it needs two"
    pid = engine_pid(store_url)
    engine_before = allowed_cpus(pid)
    broker = kafka_pid(queue_url)
    assert broker is not None, "the test stack's Kafka runs on this machine"
    kafka_before = allowed_cpus(broker)
    report = _bench(tmp_path, env, "--shape", "distributed", "--engine-cpus", str(cpus[-1]))
    rest = ",".join(str(cpu) for cpu in cpus[:-1])
    assert _figure(report, "CPUs") == (f"OpenSearch (pid {pid}) pinned to CPU {cpus[-1]}; LogFlow's processes and "
                                       f"the load generators on CPU {rest}, with Kafka (pid {broker}); other "
                                       f"processes not moved")
    assert f"--processors 1 --engine-cpus {cpus[-1]}`" in report
    # The engine's threads run where they ran before; those it started meanwhile where its main thread did.
    after = allowed_cpus(pid)
    assert after == {tid: engine_before.get(tid, engine_before[pid]) for tid in after}
    kafka_after = allowed_cpus(broker)
    assert kafka_after == {tid: kafka_before.get(tid, kafka_before[broker]) for tid in kafka_after}
    assert EVENTS <= int(_figure(report, "documents stored").replace(",", "")) <= EVENTS + 100
    ceiling = _figure(report, "OpenSearch `_bulk` ceiling, plain client, 2 connections")
    match = re.fullmatch(r"([\d,]+) events/s, the better of ([\d,]+) \(before LogFlow's run\) and ([\d,]+) \(after\) "
                         r"→ LogFlow reaches \d+ % of it", ceiling)
    assert match, ceiling
    best, first, second = (int(group.replace(",", "")) for group in match.groups())
    assert best == max(first, second) > 0
    assert _bench_leftovers(queue_url, store_url) == before
