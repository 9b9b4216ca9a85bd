"""kill -9 a publishing process and check that every acknowledged record survives exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import logflow
from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.embedded import EmbeddedQueue
from logflow.backends.queue.segments import LogLocked

# Several threads publish small batches of numbered records; a number is printed (one write()
# per batch, so a kill cannot split a line in two) only after publish() returned for it.
CHILD = r"""
import itertools, os, sys, threading
from pathlib import Path
from logflow.backends.queue.base import QueueRecord
from logflow.backends.queue.embedded import EmbeddedQueue

run, directory = sys.argv[1], Path(sys.argv[2])
queue = EmbeddedQueue(directory, segment_bytes=256 * 1024, min_free_disk_bytes=0)
numbers, out_lock = itertools.count(), threading.Lock()

def publish(thread):
    key = b"thread-%d" % thread
    while True:
        with out_lock:
            batch = [next(numbers) for _ in range(1 + thread * 7)]
        queue.publish([QueueRecord(key, b"%s:%d:%s" % (run.encode(), n, b"p" * 200)) for n in batch])
        line = "".join(f"{run}:{n}\n" for n in batch).encode()
        with out_lock:
            os.write(1, line)

for t in range(4):
    threading.Thread(target=publish, args=(t,), daemon=True).start()
threading.Event().wait()
"""

# Holds the writer and the "processor" group while the test process tries to take them.
HOLDER = r"""
import sys, time
from pathlib import Path
from logflow.backends.queue.base import QueueRecord
from logflow.backends.queue.embedded import EmbeddedQueue

queue = EmbeddedQueue(Path(sys.argv[1]), min_free_disk_bytes=0)
consumer = queue.consumer("processor")
for i in range(200):
    queue.publish([QueueRecord(b"k", b"%d" % i)])
print("ready", flush=True)
time.sleep(60)
"""

ROUNDS = 3


def child_env() -> dict[str, str]:
    src = str(Path(logflow.__file__).parents[1])  # the child imports the same logflow as the test
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


def run_and_kill(run: int, directory: Path, acks_path: Path) -> None:
    with acks_path.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(run), str(directory)],
            stdout=out,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
    try:
        deadline = time.monotonic() + 15
        while acks_path.stat().st_size == 0:  # wait for the first acknowledgement
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never acknowledged a publish"
            time.sleep(0.01)
        time.sleep(0.5)
        assert child.poll() is None, "the child exited on its own"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()


def acknowledged(acks_path: Path) -> list[str]:
    raw = acks_path.read_bytes()
    # A kill between two writes cannot tear a line, but stay strict about what is counted.
    return raw[: raw.rfind(b"\n") + 1].decode().splitlines()


@pytest.mark.slow
def test_acknowledged_records_survive_kill_9_exactly_once(tmp_path: Path) -> None:
    directory = tmp_path / "queue"
    seen: Counter[str] = Counter()
    acked: set[str] = set()
    for run in range(ROUNDS):
        acks_path = tmp_path / f"acks-{run}.txt"
        run_and_kill(run, directory, acks_path)
        run_acks = acknowledged(acks_path)
        assert len(run_acks) > 0
        acked.update(run_acks)

        queue = EmbeddedQueue(directory, min_free_disk_bytes=0)  # recovers the torn tail, if any
        try:
            consumer = queue.consumer("verify")
            last_per_key: dict[bytes, int] = {}
            while (batch := consumer.poll(5000, 0.2)) is not None:
                for record in batch.records:
                    run_id, number, padding = record.value.split(b":")
                    assert padding == b"p" * 200, f"corrupt record {record.value[:40]!r}"
                    seen[f"{int(run_id)}:{int(number)}"] += 1
                    # Each thread publishes its numbers in increasing order: so must they come.
                    if int(run_id) == run:
                        assert int(number) > last_per_key.get(record.key, -1)
                        last_per_key[record.key] = int(number)
                consumer.commit(batch)
        finally:
            queue.close()

    missing = sorted(acked - set(seen))
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    duplicated = [value for value, count in seen.items() if count > 1]
    assert not duplicated, f"{len(duplicated)} records delivered twice, e.g. {duplicated[:5]}"
    assert len(seen) >= len(acked)


def test_writer_and_group_locks_hold_across_processes(tmp_path: Path) -> None:
    directory = tmp_path / "queue"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, env=child_env()
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        with pytest.raises(LogLocked, match="already has a writer"):
            EmbeddedQueue(directory, min_free_disk_bytes=0)
        reader = EmbeddedQueue(directory, writer=False, min_free_disk_bytes=0)
        try:
            with pytest.raises(BackendUnavailable, match="already has a consumer"):
                reader.consumer("processor")
            # Another group, in this process, reads what the writer process made durable.
            batch = reader.consumer("other").poll(1000, 2.0)
            assert batch is not None
            assert [r.value for r in batch.records] == [b"%d" % i for i in range(200)]
        finally:
            reader.close()
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()
    queue = EmbeddedQueue(directory, min_free_disk_bytes=0)  # both locks died with the process
    try:
        queue.consumer("processor").close()
    finally:
        queue.close()
