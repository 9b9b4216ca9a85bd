"""Helpers for end-to-end tests of the distributed shape: processes and the shared stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import REPO, drop_indices, require_engine
from tests.e2e.helpers import free_port


def distributed_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for `logflow api|processor` on the real engines, isolated by unique names."""
    unique = uuid.uuid4().hex[:10]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFLOW_") or k.startswith("LOGFLOW_TEST_")}
    env.update(
        {
            "LOGFLOW_QUEUE_URL": require_engine("kafka"),
            "LOGFLOW_STORE_URL": require_engine("opensearch"),
            "LOGFLOW_DATABASE_URL": require_engine("postgres"),
            "LOGFLOW_CACHE_URL": require_engine("redis"),
            "LOGFLOW_KAFKA_TOPIC": f"lf-e2e-{unique}",
            "LOGFLOW_KAFKA_DEAD_LETTER_TOPIC": f"lf-e2e-{unique}-dlq",
            "LOGFLOW_KAFKA_PARTITIONS": "4",
            "LOGFLOW_PROCESSOR_GROUP": f"lf-e2e-{unique}",
            "LOGFLOW_STORE_INDEX_PREFIX": f"lf-e2e-{unique}",
            "LOGFLOW_DATA_DIR": str(data_dir),
            "LOGFLOW_INGEST_OPEN": "true",
            "LOGFLOW_PUBLIC_READ": "true",
            # No syslog/GELF listeners: their fixed default ports would collide between processes.
            "LOGFLOW_SYSLOG_PORT": "0",
            "LOGFLOW_GELF_PORT": "0",
        }
    )
    env.update(extra)
    return env


class Proc:
    """One `logflow <command>` process in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "logflow", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill9(self) -> None:
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._fh.close()


class Cluster:
    """`logflow api` plus N `logflow processor` processes sharing one set of real engines."""

    def __init__(self, tmp: Path, processors: int, **env_extra: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = distributed_env(tmp / "data", LOGFLOW_PORT=str(self.port), **env_extra)
        self.api = Proc(["api"], self.env, tmp / "api.log")
        self.processors = [self.start_processor(i) for i in range(processors)]

    def start_processor(self, index: int) -> Proc:
        return Proc(
            ["processor", "--index", str(index)], self.env, self.tmp / f"processor-{index}-{time.time_ns()}.log"
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api.popen.poll() is not None:
                raise AssertionError(self.api.log.read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"api not healthy: {self.api.log.read_text()[-3000:]}")

    def status(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(f"{self.url}/api/v1/pipeline/status", timeout=30).json()
        return result

    def wait_drained(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.status()["queue"]
            assert isinstance(queue, dict)
            if queue["partitions"] and queue["total_lag"] == 0:
                return
            time.sleep(0.25)
        raise AssertionError(f"backlog not drained: {self.status()}")

    def stop(self) -> None:
        for proc in [*self.processors, self.api]:
            proc.stop()
        drop_resources(self.env)


def drop_resources(env: dict[str, str]) -> None:
    """Delete the cluster's topics, consumer group, indices and template from the shared engines."""
    from confluent_kafka.admin import AdminClient

    from logflow.backends.queue.kafka.admin import delete_groups, delete_topics
    from logflow.backends.queue.kafka.config import KafkaOptions, parse_kafka_url

    servers, extra = parse_kafka_url(env["LOGFLOW_QUEUE_URL"])
    admin = AdminClient(KafkaOptions(servers, extra=extra).admin())
    delete_groups(admin, [env["LOGFLOW_PROCESSOR_GROUP"]], 30.0)
    delete_topics(admin, [env["LOGFLOW_KAFKA_TOPIC"], env["LOGFLOW_KAFKA_DEAD_LETTER_TOPIC"]], 30.0)
    drop_indices(env["LOGFLOW_STORE_URL"], env["LOGFLOW_STORE_INDEX_PREFIX"])


def stack(action: str, service: str) -> None:
    """Stop or start one shared engine through scripts/stack.sh (fault tests only)."""
    subprocess.run(
        [str(REPO / "scripts" / "stack.sh"), action, service],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
