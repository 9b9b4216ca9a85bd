"""``logflow bench --engine-cpus``: CPU lists, and pinning a real process's threads and putting them back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logflow.bench.cpus import (
    CpuSplit,
    CpuSplitError,
    format_cpus,
    kafka_pid,
    listener_pid,
    parse_cpus,
    pin_process,
    pinned,
    plan_split,
    restore,
)

AVAILABLE = frozenset(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(AVAILABLE) < 2, reason="pinning is only visible with two CPUs or more")


def allowed_cpus(pid: int) -> dict[int, frozenset[int]]:
    """Each thread's CPUs as the kernel reports them (Cpus_allowed_list)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[int(tid)] = parse_cpus(line.split(":", 1)[1])
    return out


@pytest.fixture
def threaded_process() -> Iterator[int]:
    """A real process with four threads, as an engine has many."""
    code = ("import threading, time\n"
            "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "print('ready', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize(("text", "cpus"), [("1", {1}), ("0,2", {0, 2}), ("2-4", {2, 3, 4}), (" 0 , 3-3", {0, 3})])
def test_cpu_lists_are_read_as_taskset_writes_them(text: str, cpus: set[int]) -> None:
    assert parse_cpus(text) == cpus
    assert parse_cpus(format_cpus(parse_cpus(text))) == cpus


@pytest.mark.parametrize("text", ["", "one", "1-", "3-1", "-2", "1,,2", "0-99999999999"])
def test_a_bad_cpu_list_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(CpuSplitError):
        parse_cpus(text)


@needs_two_cpus
def test_every_thread_is_pinned_and_then_put_back(threaded_process: int) -> None:
    before = allowed_cpus(threaded_process)
    assert len(before) == 4 and set(before.values()) == {AVAILABLE}
    target = frozenset({max(AVAILABLE)})
    saved = pin_process(threaded_process, target)
    assert set(saved.threads) == set(before)
    assert set(allowed_cpus(threaded_process).values()) == {target}
    restore(saved)
    assert allowed_cpus(threaded_process) == before


@needs_two_cpus
def test_a_thread_started_while_pinned_is_put_back_too() -> None:
    # This process: a thread started while pinned inherits the pin; restoring must undo it as well.
    target = frozenset({max(AVAILABLE)})
    release = threading.Event()
    saved = pin_process(os.getpid(), target)
    try:
        late = threading.Thread(target=release.wait, daemon=True)
        late.start()
        assert late.native_id is not None and allowed_cpus(os.getpid())[late.native_id] == target
    finally:
        restore(saved)
    try:
        assert set(allowed_cpus(os.getpid()).values()) == {AVAILABLE}
    finally:
        release.set()
        late.join()


def test_a_split_that_leaves_one_side_without_cpus_is_refused_before_touching_the_engine() -> None:
    # The store URL is never asked: the split is checked first.
    for cpus in (AVAILABLE, frozenset(), frozenset({max(AVAILABLE) + 1})):
        with pytest.raises(CpuSplitError, match="some but not all"):
            plan_split("http://127.0.0.1:1", "", cpus)


@needs_two_cpus
def test_an_engine_that_is_not_there_or_not_named_is_reported() -> None:
    with pytest.raises(CpuSplitError, match="could not ask"):
        plan_split("http://127.0.0.1:1", "", frozenset({max(AVAILABLE)}))
    with pytest.raises(CpuSplitError, match="needs LOGFLOW_STORE_URL"):
        plan_split("", "", frozenset({max(AVAILABLE)}))


def _listening_process(name: str) -> subprocess.Popen[bytes]:
    """A real process with ``name`` in its command line, listening on a port it prints."""
    code = ("import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(60)\n")
    return subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE)


def test_a_broker_is_found_by_its_port_and_a_proxy_on_it_is_not() -> None:
    broker, proxy = _listening_process("kafka.Kafka"), _listening_process("docker-proxy")
    try:
        assert broker.stdout is not None and proxy.stdout is not None
        broker_port, proxy_port = int(broker.stdout.readline()), int(proxy.stdout.readline())
        assert listener_pid(broker_port) == broker.pid and listener_pid(proxy_port) == proxy.pid
        assert kafka_pid(f"kafka://127.0.0.1:{broker_port}") == broker.pid
        assert kafka_pid(f"kafka://localhost:{broker_port}?security.protocol=plaintext") == broker.pid
        assert kafka_pid(f"kafka://127.0.0.1:{proxy_port}") is None  # listening, but no broker
        assert kafka_pid(f"kafka://broker.example:{broker_port}") is None  # not this machine's to pin
        assert kafka_pid("not a kafka url") is None
    finally:
        for proc in (broker, proxy):
            proc.kill()
            proc.communicate()


def test_only_a_listener_counts() -> None:
    with socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))
        assert listener_pid(bound_only.getsockname()[1]) is None


@needs_two_cpus
def test_inside_the_split_each_side_runs_on_its_cpus_and_afterwards_where_it_ran(threaded_process: int) -> None:
    engine_cpus, rest = frozenset({max(AVAILABLE)}), AVAILABLE - {max(AVAILABLE)}
    broker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        split = CpuSplit(threaded_process, engine_cpus, rest, broker.pid)
        with pytest.raises(RuntimeError, match="the run failed"), pinned(split):
            assert set(allowed_cpus(threaded_process).values()) == {engine_cpus}
            assert set(allowed_cpus(os.getpid()).values()) == {rest}
            assert set(allowed_cpus(broker.pid).values()) == {rest}
            raise RuntimeError("the run failed")
        for pid in (threaded_process, os.getpid(), broker.pid):
            assert set(allowed_cpus(pid).values()) == {AVAILABLE}
    finally:
        broker.kill()
        broker.wait()


@needs_two_cpus
def test_a_pin_that_fails_part_way_puts_back_what_it_pinned(threaded_process: int) -> None:
    # No CPU 8000 here: pinning this process to it fails (EINVAL) after the "engine" was pinned.
    split = CpuSplit(threaded_process, frozenset({max(AVAILABLE)}), frozenset({8000}), None)
    with pytest.raises(CpuSplitError, match="cannot pin process"), pinned(split):
        pass
    assert set(allowed_cpus(threaded_process).values()) == {AVAILABLE}
    assert set(allowed_cpus(os.getpid()).values()) == {AVAILABLE}


@needs_two_cpus
def test_sigterm_during_the_run_still_puts_the_engine_back(threaded_process: int) -> None:
    split = CpuSplit(threaded_process, frozenset({max(AVAILABLE)}), AVAILABLE - {max(AVAILABLE)}, None)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, pinned(split):
        os.kill(os.getpid(), signal.SIGTERM)  # to this thread: its handler runs before the next line
        pytest.fail("SIGTERM did not stop the run")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert set(allowed_cpus(threaded_process).values()) == {AVAILABLE}
    assert set(allowed_cpus(os.getpid()).values()) == {AVAILABLE}
    assert signal.getsignal(signal.SIGTERM) == before
