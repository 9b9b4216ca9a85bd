"""The processor's prepare helper: a real child process, a real embedded queue and store.

Preparation in the helper must give the store exactly what preparation in place gives; losing
the helper (kill -9) must lose and double nothing; stopping must leave no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.base import QueueRecord
from logflow.backends.store.base import PreparedBatch
from logflow.backends.store.embedded.prepare import prepare_payloads
from logflow.domain.events import LogEvent
from logflow.domain.ids import new_ulid
from logflow.domain.levels import Level
from logflow.domain.query import LogFilter
from logflow.ingest.prepare_worker import InlinePreparer, PrepareFailed, PrepareWorker
from logflow.ingest.processor import Processor
from logflow.runtime import Runtime
from logflow.settings import Settings
from tests.conftest import loghub_rows
from tests.e2e.helpers import child_pids
from tests.integration.test_shipper import wait_for
from tests.unit.test_opensearch_prepare import indexed_payload

HELPER_MODULE = "logflow.ingest.prepare_worker"


def explode(payloads: list[bytes]) -> PreparedBatch:
    """A preparation with a bug (run in the helper by its module path)."""
    raise ZeroDivisionError(f"cannot prepare {len(payloads)} payloads")


def choke_on_poison(payloads: list[bytes]) -> PreparedBatch:
    """A preparation that fails on one kind of payload no check foresaw (run in the helper too)."""
    if any(payload.startswith(b"poison") for payload in payloads):
        raise ValueError("choked on a poison payload")
    return PreparedBatch(undecodable=[(i, "empty") for i, p in enumerate(payloads) if not p],
                         data=[p for p in payloads if p])


def helper_pids() -> list[int]:
    """Children of this process running the prepare helper."""
    return child_pids(os.getpid(), HELPER_MODULE.encode())


def loghub_wire(system: str, count: int, *, service: str | None = None) -> list[LogEvent]:
    now = time.time_ns() // 1000
    rows = loghub_rows(system)  # 2,000 lines per system: longer runs go round again
    levels = [Level.INFO, Level.WARN, Level.ERROR, Level.DEBUG]
    return [
        LogEvent(id=new_ulid((now - (count - i) * 1000) // 1000), timestamp=now - (count - i) * 1000,
                 level=levels[i % 4], service=service or system.lower(), message=rows[i % len(rows)]["Content"],
                 host=f"h{i % 3}", attributes={"event_id": rows[i % len(rows)]["EventId"], "n": i})
        for i in range(count)
    ]


@pytest.fixture
def worker() -> Iterator[PrepareWorker]:
    helper = PrepareWorker(prepare_payloads)
    yield helper
    helper.close()


def test_helper_prepares_exactly_what_preparation_in_place_does(worker: PrepareWorker) -> None:
    events = loghub_wire("HDFS", 1500) + loghub_wire("Apache", 700)
    payloads = [e.to_wire() for e in events] + [b"{not json", b"\x02short"]
    worker.submit(payloads)
    remote = worker.result()
    local = prepare_payloads(payloads)
    assert remote == local
    assert [index for index, _ in remote.undecodable] == [2200, 2201]
    items = [item for _, day_items, _ in remote.data for item in day_items]
    assert [item[0] for item in items] == [e.id for e in sorted(events, key=lambda e: e.timestamp // 86_400_000_000)]


def test_helper_reports_a_failing_preparation_and_keeps_serving() -> None:
    helper = PrepareWorker(explode)
    try:
        helper.submit([b"a", b"b"])
        with pytest.raises(PrepareFailed, match="ZeroDivisionError: cannot prepare 2 payloads"):
            helper.result()
        helper.submit([b"c", b"d", b"e"])  # a payload every store prepares fails too: the code's fault
        with pytest.raises(PrepareFailed, match="cannot prepare 3 payloads"):
            helper.result()
    finally:
        helper.close()


@pytest.mark.parametrize("where", ["helper", "inline"])
def test_payloads_that_make_the_preparation_raise_are_set_apart_and_the_rest_prepared(where: str) -> None:
    preparer = PrepareWorker(choke_on_poison) if where == "helper" else InlinePreparer(choke_on_poison)
    try:
        preparer.submit([b"a", b"poison 1", b"", b"b", b"poison 2", b"c"])
        prepared = preparer.result()
        assert prepared.data == [b"a", b"b", b"c"]
        assert [(index, reason.split(":")[0]) for index, reason in prepared.undecodable] == [
            (1, "cannot be prepared for the store"), (2, "empty"), (4, "cannot be prepared for the store")]
        assert "ValueError: choked on a poison payload" in prepared.undecodable[0][1]
        preparer.submit([b"poison alone"])  # a batch of one that fails: set apart as well
        assert preparer.result() == PreparedBatch(undecodable=[(0, prepared.undecodable[0][1])], data=[])
        # A batch of nothing but poison (another writer's flood): the canary says the code is fine.
        preparer.submit([b"poison 3", b"poison 4"])
        assert [index for index, _ in preparer.result().undecodable] == [0, 1]
    finally:
        preparer.close()


def test_the_helper_logs_what_it_sets_apart_in_the_processors_format(capfd: pytest.CaptureFixture[str]) -> None:
    # The helper's stderr is the processor's (file descriptor 2, captured here at that level).
    helper = PrepareWorker(choke_on_poison)
    try:
        helper.submit([b"a", b"poison 1"])
        assert [index for index, _ in helper.result().undecodable] == [1]
    finally:
        helper.close()
    lines = [line for line in capfd.readouterr().err.splitlines() if "payloads of a batch" in line]
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR logflow\.processor: processor: 1 of 2 "
                        r"payloads of a batch .*", lines[0]), lines[0]


def test_preparing_inline_reports_a_failure_at_result_like_the_helper() -> None:
    inline = InlinePreparer(explode)
    inline.submit([b"a", b"b"])  # the failure waits for result(), where the processor takes it
    with pytest.raises(PrepareFailed, match="ZeroDivisionError: cannot prepare 2 payloads"):
        inline.result()
    with pytest.raises(RuntimeError, match="nothing was submitted"):
        inline.result()
    working = InlinePreparer(prepare_payloads)
    payloads = [e.to_wire() for e in loghub_wire("Spark", 300)] + [b"{not json"]
    working.submit(payloads)
    with pytest.raises(RuntimeError, match="not taken"):
        working.submit(payloads)
    assert working.result() == prepare_payloads(payloads)
    assert helper_pids() == []  # no process of its own


def test_a_killed_helper_is_reported_and_replaced(worker: PrepareWorker) -> None:
    worker.submit([])
    worker.result()
    pid = worker.pid
    assert pid is not None and pid in helper_pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BackendUnavailable, match="prepare helper process lost"):
        # The loss shows when sending (the pipe is broken) or when reading the answer.
        worker.submit([LogEvent(id="x", timestamp=1, level=Level.INFO, service="s", message="m").to_wire()])
        worker.result()
    worker.submit([])  # the next batch starts another helper
    assert worker.result() == PreparedBatch(undecodable=[], data=[])
    assert worker.pid not in (None, pid)


def run_processor(runtime: Runtime, stop: threading.Event) -> tuple[Processor, threading.Thread]:
    settings = runtime.settings
    processor = Processor(runtime.queue, runtime.store, group=settings.processor_group, batch_size=500,
                          prepare_worker=True)
    assert processor.helper  # the embedded store prepares in a helper process
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    return processor, thread


def test_pipelined_processor_stores_every_event_once_through_a_helper_kill(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(data_dir=tmp_path / "data"))
    events = loghub_wire("OpenSSH", 6000)
    records = [QueueRecord(b"openssh", e.to_wire()) for e in events]
    runtime.queue.publish([*records[:3000], QueueRecord(b"x", b"{broken")])
    stop = threading.Event()
    processor, thread = run_processor(runtime, stop)
    try:
        wait_for(lambda: processor.counters.stored >= 1000, "1,000 events stored", timeout=30)
        for pid in helper_pids():
            os.kill(pid, signal.SIGKILL)
        runtime.queue.publish(records[3000:] + records[:200])  # and a replay of 200 already sent
        wait_for(lambda: all(p.lag == 0 for p in runtime.queue.stats(processor.group).partitions), "no lag",
                 timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert helper_pids() == []  # stopping the processor stopped its helper
    runtime.store.refresh()
    assert runtime.store.count(LogFilter()) == 6000
    assert processor.counters.stored == 6000 and processor.counters.dead_letters == 1
    assert processor.counters.duplicates >= 200
    assert processor.counters.store_errors >= 1  # the lost helper, reported like a store outage
    for event in events[::500]:
        stored = runtime.store.get(event.id)
        assert stored is not None and stored.message == event.message and stored.attributes == event.attributes
    letters = runtime.queue.read_dead_letters(10)
    assert [letter.value for letter in letters] == [b"{broken"]
    runtime.close()


def test_duplicates_inside_prepared_blocks_leave_every_document_in_its_slot(tmp_path: Path) -> None:
    """A replay mixed with new events: the blocks are rebuilt from the fresh documents only."""
    runtime = Runtime.build(Settings(data_dir=tmp_path / "data"))
    events = loghub_wire("Zookeeper", 1200)
    first, rest = events[:700], events[700:]
    runtime.store.write(first)
    mixed = [e for pair in zip(first[:500], rest[:500], strict=True) for e in pair] + rest[500:]
    result = runtime.store.write(mixed)
    assert (result.stored, result.duplicates) == (500, 500)
    runtime.store.refresh()
    for event in events:
        stored = runtime.store.get(event.id)
        assert stored is not None and (stored.message, stored.host) == (event.message, event.host)
    assert runtime.store.count(LogFilter()) == 1200
    runtime.close()


def test_an_embedded_processor_stores_events_queued_in_opensearch_document_form(tmp_path: Path) -> None:
    """Wire format 3 on a queue read by another store (a deployment moving off OpenSearch): every
    field arrives, through the helper, like format 2."""
    runtime = Runtime.build(Settings(data_dir=tmp_path / "data"))
    events = loghub_wire("Apache", 1500)
    runtime.queue.publish([QueueRecord(b"apache", indexed_payload(e)) for e in events])
    stop = threading.Event()
    processor, thread = run_processor(runtime, stop)
    try:
        wait_for(lambda: all(p.lag == 0 for p in runtime.queue.stats(processor.group).partitions), "no lag",
                 timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
    runtime.store.refresh()
    assert processor.counters.stored == 1500 and processor.counters.dead_letters == 0
    for event in events[::100]:
        assert runtime.store.get(event.id) == event
    runtime.close()
