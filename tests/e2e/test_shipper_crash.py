"""``logflow ship`` as a real process: kill -9 mid-stream and restart, ``--once`` exit codes and summary.

LogFlow runs in the test process (both shapes) on a real socket; the shipper is a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from tests.conftest import LogFlow
from tests.integration.test_shipper import HDFS, append, assert_exactly_once, search_all, wait_for
from tests.serving import free_port, serve_app


def ship_command(url: str, key: str, state_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "logflow", "ship", "--target", url, "--api-key", key, "--state-dir", str(state_dir),
            "--scan-interval", "0.2", "--flush-interval", "0.1", "--batch-size", "50", "--rotated-grace", "1",
            "--multiline-timeout", "0.3", *args]


class ShipProcess:
    """A tailing ``logflow ship`` whose output goes to a file (read on failure)."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._log.close()
        return code


def stored_count(flow: LogFlow, service: str) -> int:
    flow.runtime.store.refresh()
    resp = flow.admin.get("/api/v1/logs/search", params={"service": service, "limit": 1})
    return int(resp.json()["total"])


def test_kill9_mid_stream_and_restart_ships_every_line_exactly_once(logflow: LogFlow, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    # The first lines are there before the shipper starts, and the application writes on only once
    # they are stored: the shipper then knows the first file before it is rotated away. (A file
    # renamed out of the glob before any shipper saw it cannot be followed by anyone; on a busy
    # machine the writer used to get that far while the first shipper was still starting.)
    append(log, HDFS[:15])
    written = [15]

    def writer() -> None:  # the application: appends, rotates by rename once, appends more
        for i in range(15, 1500, 15):
            if i == 750:
                os.rename(log, tmp_path / "app.log.1")
            append(log, HDFS[i : i + 15])
            written[0] = i + 15
            time.sleep(0.02)

    with serve_app(logflow.client.app) as url:
        command = ship_command(url, logflow.ingest_key, tmp_path / "state", str(log), "--service", "hdfs")
        output = tmp_path / "ship.log"
        thread = threading.Thread(target=writer, daemon=True)
        shipper = ShipProcess(command, output)
        try:
            wait_for(lambda: stored_count(logflow, "hdfs") > 0, "the first lines")
            thread.start()
            for threshold in (400, 900):  # two crashes while lines keep coming (the second after the rotation)
                wait_for(lambda t=threshold: written[0] >= t and stored_count(logflow, "hdfs") > 0,  # type: ignore[misc]
                         f"{threshold} lines written")
                shipper.kill9()
                shipper = ShipProcess(command, output)
            thread.join(60)
            try:
                wait_for(lambda: stored_count(logflow, "hdfs") >= 1500, "all 1500 lines", timeout=120)
            except AssertionError:
                # Where did the lines stop: at the shipper, in the queue or at the processor?
                status = logflow.admin.get("/api/v1/pipeline/status").json()
                running = zip(logflow.processors, logflow.threads, strict=True)
                processors = [(p.counters, t.is_alive()) for p, t in running]
                raise AssertionError(
                    f"{stored_count(logflow, 'hdfs')} of 1500 lines stored; ingest {status['ingest']}, "
                    f"queue lag {status['queue']['total_lag']}; processors "
                    f"{processors}; "
                    f"shipper output: {output.read_text()[-2000:]}"
                ) from None
            # A second shipper on the same state directory is refused (it would corrupt the registry).
            locked = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert locked.returncode == 2 and "another logflow ship is using" in locked.stderr
        finally:
            code = shipper.terminate()  # also when the test fails: no shipper outlives it
        assert code == 0, output.read_text()[-3000:]
    assert_exactly_once(logflow, "hdfs", HDFS[:1500])


def test_once_imports_exits_zero_and_reports_rejections(logflow: LogFlow, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "hdfs.log", HDFS[:700])
    with serve_app(logflow.client.app) as url:
        state = tmp_path / "state"
        first = subprocess.run(ship_command(url, logflow.ingest_key, state, str(tmp_path / "logs" / "*.log"),
                                            "--service", "hdfs", "--once"),
                               capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "sent 700 · rejected 0" in first.stderr
        rows = [{"message": line, "level": "error", "service": "api"} for line in HDFS[700:760]]
        rows[3]["level"] = "shouting"
        (tmp_path / "logs" / "api.log").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        second = subprocess.run(ship_command(url, logflow.ingest_key, state, str(tmp_path / "logs" / "*.log"),
                                             "--service", "hdfs", "--once"),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1  # something was rejected: the summary says what
        assert "sent 59 · rejected 1" in second.stderr  # hdfs.log was already shipped: nothing sent twice
        assert "unknown level 'shouting'" in second.stderr and "api.log@" in second.stderr
        wrong_key = subprocess.run(ship_command(url, "not-a-key", tmp_path / "state2", str(tmp_path / "logs"
                                                                                          / "*.log"),
                                                "--service", "hdfs", "--once"),
                                   capture_output=True, text=True, timeout=120)
        assert wrong_key.returncode == 1 and "unsendable: HTTP 401" in wrong_key.stderr
    assert_exactly_once(logflow, "hdfs", HDFS[:700])
    stored = search_all(logflow, "api")
    assert sorted(log["message"] for log in stored) == sorted(r["message"] for r in rows if r["level"] == "error")
    assert {log["level"] for log in stored} == {"ERROR"}


def test_once_gives_up_when_logflow_never_answers(tmp_path: Path) -> None:
    append(tmp_path / "a.log", HDFS[:5])
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = subprocess.run(ship_command(url, "key", tmp_path / "state", str(tmp_path / "a.log"), "--service", "x",
                                       "--once", "--give-up-after", "1"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "unsendable: LogFlow did not accept the batch for 1s: ConnectError" in done.stderr
    assert "sent 0 · rejected 0" in done.stderr
    state = orjson.loads((tmp_path / "state" / "state.json").read_bytes())
    assert [f["offset"] for f in state["files"]] == [0]  # nothing checkpointed: a later run sends it all
