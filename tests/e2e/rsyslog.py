"""A real rsyslogd for the protocol tests: found (or the test fails in CI), started on a config, stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI


def rsyslogd_binary() -> str:
    """rsyslogd's path; fails in CI (the test set-up installs it) and skips elsewhere when absent."""
    found = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = "rsyslogd is not installed (scripts/stack.sh tools installs it)"
    if IN_CI or os.environ.get("LOGFLOW_REQUIRE_DISTRIBUTED"):
        pytest.fail(message)
    pytest.skip(message)


def start_rsyslogd(config: str, work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Validate ``config`` (``rsyslogd -N1``), then run rsyslogd on it in the foreground.

    Returns the process and the file its output goes to. It uses its own pid file in ``work``,
    never the system's, so it runs beside (or without) a system rsyslog.
    """
    binary = rsyslogd_binary()
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "rsyslog.conf"
    conf.write_text(config)
    check = subprocess.run([binary, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, f"rsyslog rejected the config:\n{check.stdout}\n{check.stderr}"
    out = work / "rsyslogd.out"
    with out.open("wb") as sink:
        process = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
                                   stdout=sink, stderr=subprocess.STDOUT)
    return process, out


def stop_rsyslogd(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (rsyslog flushes its queues), then SIGKILL if it does not exit."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
