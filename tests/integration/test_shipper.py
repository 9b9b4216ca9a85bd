"""``logflow ship`` (in process) against a real LogFlow on a socket, both shapes, with real Loghub lines.

Files are appended, renamed away, copytruncated and deleted while the shipper runs; LogFlow is
stopped and started again; a crash between LogFlow's 2xx and the checkpoint is reproduced from the
state the shipper really wrote. Every test reads the events back through the search API and compares
counts, messages, ids and fields exactly.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from logflow.shipper import ShipConfig, Shipper
from logflow.shipper.parse import detect_level
from tests.conftest import SHARED, LogFlow
from tests.serving import free_port, serve_app

LOGHUB = SHARED / "data" / "loghub"
HDFS = (LOGHUB / "HDFS" / "HDFS_2k.log").read_text().splitlines()
HADOOP = (LOGHUB / "Hadoop" / "Hadoop_2k.log").read_text().splitlines()
# Java stack traces: the exception of a real Hadoop line, frames of the classes those lines name.
TRACES = [
    ["java.net.NoRouteToHostException: No route to host: no further information",
     "\tat sun.nio.ch.SocketChannelImpl.checkConnect(Native Method)",
     "\tat org.apache.hadoop.net.SocketIOWithTimeout.connect(SocketIOWithTimeout.java:206)",
     "\tat org.apache.hadoop.ipc.Client$Connection.setupConnection(Client.java:608)"],
    ["java.io.IOException: Bad response ERROR for block BP-1347369012-10.190.173.170-1444972147527:blk_1073743512_2731",
     "\tat org.apache.hadoop.hdfs.DFSOutputStream$DataStreamer$ResponseProcessor.run(DFSOutputStream.java:898)",
     "Caused by: java.net.SocketTimeoutException: 70000 millis timeout",
     "\t... 3 more"],
]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def search_all(flow: LogFlow, service: str) -> list[dict[str, Any]]:
    """Every stored event of ``service``, oldest first (after the processor has stored everything)."""
    flow.settle()
    logs: list[dict[str, Any]] = []
    while True:
        resp = flow.admin.get("/api/v1/logs/search",
                              params={"service": service, "limit": 1000, "offset": len(logs), "sort": "asc"})
        assert resp.status_code == 200, resp.text
        page = resp.json()["logs"]
        logs.extend(page)
        if len(page) < 1000:
            return logs


def assert_exactly_once(flow: LogFlow, service: str, expected: list[str]) -> list[dict[str, Any]]:
    logs = search_all(flow, service)
    assert len(logs) == len(expected)
    assert Counter(log["message"] for log in logs) == Counter(expected)
    assert len({log["id"] for log in logs}) == len(expected)
    return logs


def append(path: Path, lines: list[str]) -> None:
    with path.open("a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def config(flow: LogFlow, url: str, tmp_path: Path, patterns: list[Path], service: str,
           **overrides: Any) -> ShipConfig:
    values: dict[str, Any] = {
        "patterns": [str(p) for p in patterns], "service": service, "target": url, "api_key": flow.ingest_key,
        "state_dir": tmp_path / "state", "host": "shipper-host", "flush_interval_s": 0.1,
        "poll_interval_s": 0.05, "scan_interval_s": 0.1, "rotated_grace_s": 0.5, "backoff_initial_s": 0.1,
        "backoff_max_s": 0.5, "multiline_timeout_s": 0.3,
    }
    values.update(overrides)
    return ShipConfig(**values)


@contextmanager
def running(cfg: ShipConfig) -> Iterator[Shipper]:
    """A tailing shipper in a thread; stopped (and joined) on exit."""
    stop = threading.Event()
    shipper = Shipper(cfg, stop=stop)
    thread = threading.Thread(target=shipper.run, name="shipper", daemon=True)
    thread.start()
    try:
        yield shipper
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


class PortServer:
    """The test's app under uvicorn on a fixed (free) port that can be stopped and started again."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        # log_config=None: uvicorn's dictConfig would close every logging handler of the test process.
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                             log_config=None)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server is not None and self.server.started, "uvicorn to start", 20)

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive()


def test_tail_follows_appends_rename_rotation_and_copytruncate(logflow: LogFlow, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    with serve_app(logflow.client.app) as url, running(config(logflow, url, tmp_path, [log], "hdfs")) as shipper:
        for i in range(0, 300, 50):  # appended while it runs
            append(log, HDFS[i : i + 50])
        wait_for(lambda: shipper.stats.sent == 300, "300 events")
        # Rename rotation: lines written just before and just after the rename still reach LogFlow.
        append(log, HDFS[300:400])
        os.rename(log, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", HDFS[400:420])
        append(log, HDFS[420:600])
        wait_for(lambda: shipper.stats.sent == 600, "600 events")
        wait_for(lambda: len(shipper.tailer.tracked) == 1, "the rotated file to be finished")
        # copytruncate: copy away (not matched by the glob), empty in place, keep writing.
        shutil.copy(log, tmp_path / "app.log.2")
        with log.open("r+") as fh:
            fh.truncate(0)
        append(log, HDFS[600:900])
        wait_for(lambda: shipper.stats.sent == 900, "900 events")
    assert shipper.stats.rejected == 0
    logs = assert_exactly_once(logflow, "hdfs", HDFS[:900])
    by_message = {log["message"]: log for log in logs}
    sample = by_message[HDFS[0]]
    assert (sample["level"], sample["host"], sample["service"]) == (detect_level(HDFS[0]), "shipper-host", "hdfs")
    assert sample["metadata"]["log"] == {"file": {"path": str(log)}, "offset": 0}
    assert Counter(log["level"] for log in logs) == Counter(detect_level(line) or "INFO" for line in HDFS[:900])


# INFO, WARN, ERROR and both FATAL lines of the Hadoop sample.
HADOOP_MIXED = HADOOP[640:900] + [line for line in HADOOP if " FATAL " in line] + HADOOP[900:1040]


def hadoop_with_traces(count: int) -> tuple[list[str], list[str]]:
    """Physical lines and the events they make: every 7th Hadoop line is followed by a stack trace."""
    lines: list[str] = []
    events: list[str] = []
    for i, line in enumerate(HADOOP_MIXED[:count]):
        trace = TRACES[i % 2] if i % 7 == 3 else []
        lines.extend([line, *trace])
        events.append("\n".join([line, *trace]))
    return lines, events


def test_once_joins_java_stack_traces(logflow: LogFlow, tmp_path: Path) -> None:
    lines, events = hadoop_with_traces(400)
    append(tmp_path / "hadoop.log", lines)
    with serve_app(logflow.client.app) as url:
        cfg = config(logflow, url, tmp_path, [tmp_path / "*.log"], "hadoop", once=True,
                     multiline_start=r"^\d{4}-\d{2}-\d{2} ", batch_size=64)
        stats = Shipper(cfg).run()
    assert (stats.completed, stats.sent, stats.rejected, stats.fatal) == (True, 400, 0, None)
    assert stats.bytes == stats.total_bytes == (tmp_path / "hadoop.log").stat().st_size
    logs = assert_exactly_once(logflow, "hadoop", events)
    levels = Counter(log["level"] for log in logs)
    expected = Counter({"FATAL": "CRITICAL", "WARN": "WARN", "ERROR": "ERROR"}.get(detect_level(e) or "", "INFO")
                       for e in events)
    assert levels == expected  # the level of an event is the level of its first line
    assert levels["CRITICAL"] > 0 and levels["WARN"] > 0 and levels["ERROR"] > 0


def test_json_lines_keep_fields_and_rejections_are_final(logflow: LogFlow, tmp_path: Path) -> None:
    now = time.time()
    rows = [{"ts": round((now - 100 + i) * 1000), "level": ["info", "warn", "error"][i % 3], "msg": HDFS[i],
             "trace_id": f"t{i}", "order": i, "tags": {"shard": i % 4}} for i in range(120)]
    rows[50]["level"] = "loud"  # refused by LogFlow: counted, logged, checkpointed past
    (tmp_path / "app.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + HDFS[999].encode())
    with serve_app(logflow.client.app) as url:
        stats = Shipper(config(logflow, url, tmp_path, [tmp_path / "app.jsonl"], "api", once=True)).run()
        assert (stats.sent, stats.rejected, stats.completed) == (120, 1, True)  # 119 JSON + 1 unterminated text
        assert "unknown level 'loud'" in stats.rejections[0]
        # Checkpointed past the rejection: a second run has nothing to send.
        again = Shipper(config(logflow, url, tmp_path, [tmp_path / "app.jsonl"], "api", once=True)).run()
        assert (again.sent, again.rejected, again.completed) == (0, 0, True)
    logs = assert_exactly_once(logflow, "api", [r["msg"] for r in rows if r["level"] != "loud"] + [HDFS[999]])
    by_trace = {log["trace_id"]: log for log in logs}
    got = by_trace["t7"]
    assert got["level"] == "WARN" and got["metadata"]["order"] == 7 and got["metadata"]["tags"] == {"shard": 3}
    assert got["timestamp"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rows[7]["ts"] / 1000)))


def test_unreachable_logflow_then_back_delivers_everything_once(logflow: LogFlow, tmp_path: Path) -> None:
    server = PortServer(logflow.client.app)
    server.start()
    log = tmp_path / "app.log"
    log.touch()
    with running(config(logflow, server.url, tmp_path, [log], "hdfs")) as shipper:
        append(log, HDFS[:200])
        wait_for(lambda: shipper.stats.sent == 200, "200 events")
        server.stop()
        append(log, HDFS[200:300])
        wait_for(lambda: shipper.stats.retries > 0, "the shipper to notice LogFlow is down")
        # Rotated away and deleted while LogFlow is down: the open descriptor still has the lines.
        os.rename(log, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", HDFS[300:350])
        os.remove(tmp_path / "app.log.1")
        append(log, HDFS[350:500])
        wait_for(lambda: len(shipper.tailer.tracked) == 2, "the new file to be picked up during the outage")
        server.start()
        wait_for(lambda: shipper.stats.sent == 500, "500 events")
    server.stop()
    assert_exactly_once(logflow, "hdfs", HDFS[:500])


def test_resend_after_a_crash_between_2xx_and_checkpoint_is_a_duplicate(logflow: LogFlow, tmp_path: Path) -> None:
    lines, events = hadoop_with_traces(60)
    lines.extend(TRACES[0])  # the file ends inside a stack trace: the idle timeout closes that event
    events[-1] = "\n".join([events[-1], *TRACES[0]])
    log = tmp_path / "hadoop.log"
    append(log, lines)
    state_file = tmp_path / "state" / "state.json"
    saved: list[bytes] = []
    with serve_app(logflow.client.app) as url:
        cfg = config(logflow, url, tmp_path, [log], "hadoop", multiline_start=r"^\d{4}-", batch_size=25)
        with running(cfg) as shipper:
            original_save = shipper.store.save

            def recording_save(states: Any) -> None:
                original_save(states)
                saved.append(state_file.read_bytes())

            shipper.store.save = recording_save  # type: ignore[method-assign]
            wait_for(lambda: shipper.stats.sent == len(events), "all events")
        before = {log["id"]: log for log in assert_exactly_once(logflow, "hadoop", events)}
        # What a kill -9 right after LogFlow's 2xx for the last batch leaves on disk: its write-ahead.
        write_ahead = [s for s in saved if orjson.loads(s)["files"][0].get("pending")][-1]
        state_file.write_bytes(write_ahead)
        late = ["\tat org.apache.hadoop.mapred.YarnChild.main(YarnChild.java:158)", HADOOP[1500]]
        append(log, late)
        stats = Shipper(config(logflow, url, tmp_path, [log], "hadoop", multiline_start=r"^\d{4}-",
                               once=True)).run()
    assert stats.completed and stats.rejected == 0 and stats.sent > len(late)  # the last batch was sent again
    after = {log["id"]: log for log in assert_exactly_once(logflow, "hadoop", events + late)}
    for event_id, log in before.items():  # same ids, same boundaries, same timestamps: nothing doubled
        assert after[event_id] == log


def test_deleted_while_down_and_shipper_restarted_ships_from_the_spool(logflow: LogFlow, tmp_path: Path) -> None:
    server = PortServer(logflow.client.app)
    server.start()
    log = tmp_path / "app.log"
    log.touch()
    with running(config(logflow, server.url, tmp_path, [log], "hdfs")) as shipper:
        append(log, HDFS[:100])
        wait_for(lambda: shipper.stats.sent == 100, "100 events")
        server.stop()
        append(log, HDFS[100:250])
        wait_for(lambda: shipper.stats.retries > 0, "the shipper to notice LogFlow is down")
        os.rename(log, tmp_path / "app.log.1")
        os.remove(tmp_path / "app.log.1")  # rotated away and deleted while LogFlow is down
        append(log, HDFS[250:300])
        wait_for(lambda: any(s.spool for s in shipper.states.values()), "the spool copy")
    # The shipper stopped before LogFlow came back: the deleted file's lines exist only in the spool.
    assert list((tmp_path / "state" / "spool").iterdir())
    server.start()
    try:
        with running(config(logflow, server.url, tmp_path, [log], "hdfs")) as restarted:
            wait_for(lambda: restarted.stats.sent == 200, "the 200 unshipped events")
            wait_for(lambda: not any(s.spool for s in restarted.states.values()), "the spool to be emptied")
    finally:
        server.stop()
    assert_exactly_once(logflow, "hdfs", HDFS[:300])
    assert list((tmp_path / "state" / "spool").iterdir()) == []


def test_request_too_large_is_split_and_an_oversized_line_rejected(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.conftest import start_logflow, stop_logflow

    flow = start_logflow(make_settings(max_body_bytes=16 * 1024))
    try:
        lines = HDFS[:300]
        huge = "081109 203615 148 INFO " + "blk_-1608999687919862906 " * 800  # alone beyond the body limit
        append(tmp_path / "big.log", [*lines[:150], huge, *lines[150:]])
        with serve_app(flow.client.app) as url:
            stats = Shipper(config(flow, url, tmp_path, [tmp_path / "big.log"], "hdfs", once=True)).run()
        assert (stats.sent, stats.rejected, stats.completed) == (300, 1, True)
        assert "413" in stats.rejections[0] and "big.log@" in stats.rejections[0]
        assert_exactly_once(flow, "hdfs", lines)
    finally:
        stop_logflow(flow)
