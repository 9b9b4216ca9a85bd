"""Give the log store's engine CPUs of its own for a distributed benchmark, as it has in production.

In the distributed shape OpenSearch runs on nodes of its own, apart from LogFlow's API and
processors. On one small machine they share every core, and the benchmark then measures how much
CPU LogFlow's processes take from the engine as much as how well the pipeline feeds it.
``--engine-cpus`` restores the separation: every thread of the engine (found through its own
``_nodes/_local/process`` API and checked to be what listens on the store URL's port, so only an
engine on this machine) is pinned to the CPUs named; the benchmark, the LogFlow processes it
starts and a Kafka broker on this machine's loopback (found by its listening port) to the others,
for the ceiling and the pipeline alike. Kafka goes with LogFlow: it is the pipeline's part, which
the ceiling does without, and must not run on the engine's CPUs. Other processes (PostgreSQL,
Redis, anything else) are not moved. Every affinity is put back afterwards, also when the run
fails or is stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx

from logflow.backends.queue.kafka.config import parse_kafka_url
from logflow.backends.store.opensearch.client import parse_store_url

# Linux's own limit on CPU numbers (CONFIG_NR_CPUS tops out at 8,192).
MAX_CPU = 8191
# Rounds of listing a process's threads and pinning the new ones: a pool may start threads while
# the first round runs, and those copy the affinity of the (maybe not yet pinned) thread starting them.
_PIN_ROUNDS = 5


class CpuSplitError(Exception):
    """The split asked for cannot be made here (bad CPU list, engine elsewhere, no permission)."""


@dataclass(frozen=True)
class CpuSplit:
    """Which CPUs the engine (process ``engine_pid``) and LogFlow's side (with ``kafka_pid``) get."""

    engine_pid: int
    engine_cpus: frozenset[int]
    logflow_cpus: frozenset[int]
    kafka_pid: int | None

    def describe(self) -> str:
        kafka = ("Kafka not found on this machine's loopback, not moved" if self.kafka_pid is None
                 else f"with Kafka (pid {self.kafka_pid})")
        return (f"OpenSearch (pid {self.engine_pid}) pinned to CPU {format_cpus(self.engine_cpus)}; LogFlow's "
                f"processes and the load generators on CPU {format_cpus(self.logflow_cpus)}, {kafka}; "
                f"other processes not moved")


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as ``taskset -c`` writes it: ``1``, ``0,2`` or ``2-3``."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise CpuSplitError(f"{text!r} is not a CPU list such as 1, 0,2 or 2-3")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise CpuSplitError(f"{part!r}: the range runs backwards")
        if last > MAX_CPU:
            raise CpuSplitError(f"{part!r}: no CPU has a number above {MAX_CPU}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def engine_pid(store_url: str) -> int:
    """The pid of the OpenSearch node behind ``store_url``, which must run on this machine."""
    try:
        endpoint = parse_store_url(store_url)
    except ValueError as exc:
        raise CpuSplitError(f"--engine-cpus needs LOGFLOW_STORE_URL of a local engine: {exc}") from None
    try:
        answer = httpx.get(f"{endpoint.base_url}/_nodes/_local/process", auth=endpoint.auth, timeout=30)
        answer.raise_for_status()
        nodes = answer.json()["nodes"]
        pid = int(next(iter(nodes.values()))["process"]["id"])
    except (httpx.HTTPError, KeyError, StopIteration, TypeError, ValueError) as exc:
        raise CpuSplitError(f"could not ask {endpoint.base_url} for its process id: {exc}") from None
    # The pid is the engine's own view: in a container, or behind a tunnel, it names some other
    # process here. Only the process that listens on the URL's port is the engine.
    port = urlsplit(endpoint.base_url).port
    if port is None or listener_pid(port) != pid:
        raise CpuSplitError(f"the engine at {endpoint.base_url} (its pid {pid}) does not run on this machine "
                            f"outside a container: --engine-cpus pins local engines only")
    return pid


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (any address), None if there is none here."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 is the socket's inode.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(_link(fd) in inodes for fd in _fds(entry)):
            return int(entry.name)
    return None


def _fds(process: Path) -> list[Path]:
    try:
        return list((process / "fd").iterdir())
    except OSError:  # gone, or not ours to look at
        return []


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed while we looked: one file, not the whole process
        return ""


def kafka_pid(queue_url: str) -> int | None:
    """The local broker behind a ``kafka://`` URL's first loopback server, None when not on this machine."""
    try:
        servers, _ = parse_kafka_url(queue_url)
    except ValueError:
        return None
    for server in servers.split(","):
        host, _, port = server.rpartition(":")
        if host.strip("[]") in ("127.0.0.1", "localhost", "::1") and port.isdigit():
            pid = listener_pid(int(port))
            # A proxy or tunnel may listen there instead (docker-proxy, ssh -L): not a broker to pin.
            if pid is not None and b"kafka" in _cmdline(pid):
                return pid
    return None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _threads(pid: int) -> list[int]:
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


@dataclass(frozen=True)
class Affinity:
    """A process's threads' CPUs before ``pin_process``; ``others`` is for threads started since."""

    pid: int
    threads: dict[int, set[int]]
    others: set[int]


def pin_process(pid: int, cpus: frozenset[int]) -> Affinity:
    """Pin every thread of ``pid`` to ``cpus``; returns what to ``restore``.

    Threads the process starts later inherit the affinity of the thread starting them. If pinning
    fails part way (or is interrupted), the threads pinned so far are put back before it raises.
    """
    try:
        saved = Affinity(pid, {}, os.sched_getaffinity(pid))
    except OSError as exc:
        raise CpuSplitError(f"cannot read the CPUs of process {pid}: {exc}") from None
    try:
        for _ in range(_PIN_ROUNDS):
            new = [tid for tid in _threads(pid) if tid not in saved.threads]
            if not new:
                break
            for tid in new:
                try:
                    saved.threads[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, cpus)
                except ProcessLookupError:  # the thread ended meanwhile
                    continue
                except OSError as exc:  # no permission, or a cpuset (container, systemd) without these CPUs
                    raise CpuSplitError(f"cannot pin process {pid} to CPU {format_cpus(cpus)}: {exc}") from None
    except BaseException:
        restore(saved)
        raise
    return saved


def restore(saved: Affinity) -> None:
    """Put every live thread of the process back: as it was, or as its process was for threads
    started while pinned (a pool that grew must not stay pinned)."""
    for tid in _threads(saved.pid):
        try:
            os.sched_setaffinity(tid, saved.threads.get(tid, saved.others))
        except OSError:  # ended meanwhile; nothing else can be done for it
            continue


def plan_split(store_url: str, queue_url: str, engine_cpus: frozenset[int]) -> CpuSplit:
    """Check the split and find the processes, before anything is pinned (or a dataset made)."""
    available = frozenset(os.sched_getaffinity(0))
    rest = available - engine_cpus
    if not engine_cpus or not engine_cpus < available or not rest:
        raise CpuSplitError(f"--engine-cpus must name some but not all of this process's CPUs "
                            f"({format_cpus(available)}); got {format_cpus(engine_cpus) or 'none'}")
    return CpuSplit(engine_pid(store_url), engine_cpus, rest, kafka_pid(queue_url))


@contextmanager
def pinned(split: CpuSplit) -> Iterator[None]:
    """While inside: the engine on its CPUs; this process (and what it starts) and Kafka on the rest."""
    saved: list[Affinity] = []
    on_main = threading.current_thread() is threading.main_thread()
    if on_main:
        # SIGTERM would end the process without unwinding: the user's engine would stay pinned.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        saved.append(pin_process(split.engine_pid, split.engine_cpus))
        # Every thread of this process: the LogFlow processes and client threads it starts inherit it.
        saved.append(pin_process(os.getpid(), split.logflow_cpus))
        if split.kafka_pid is not None:
            saved.append(pin_process(split.kafka_pid, split.logflow_cpus))
        yield
    finally:
        for affinity in reversed(saved):
            restore(affinity)
        if on_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
