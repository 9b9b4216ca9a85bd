"""rsyslog's ``omfwd`` forwarding real Loghub lines to LogFlow's syslog listener, UDP and TCP.

A real ``rsyslogd`` runs as a subprocess with its own config and work directory: an ``imfile``
input reads a log file this test writes and hands its lines to a ruleset whose only action is
``omfwd`` aimed at LogFlow's listener (running inside the app's lifespan under uvicorn, as in
``logflow serve``). Three wire forms: RFC 5424 (``RSYSLOG_SyslogProtocol23Format``) over UDP,
the same over TCP with RFC 6587 octet-counted framing, and rsyslog's default traditional (RFC 3164)
format over TCP with newline framing. Events are read back through the search API, counts exact.
"""

from __future__ import annotations

import calendar
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LogFlow, loghub_rows
from tests.e2e.rsyslog import start_rsyslogd, stop_rsyslogd
from tests.integration.test_protocol_syslog import free_udp_tcp_port, listening, search

HOSTNAME = "rsyslog-e2e"
CONFIG = """
global(workDirectory="{work}" localHostname="{hostname}" maxMessageSize="64k")
module(load="imfile")
ruleset(name="forward") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" {action}
         queue.type="linkedList" action.resumeRetryCount="-1" action.resumeInterval="1")
}}
input(type="imfile" file="{logfile}" tag="{tag}:" facility="{facility}" severity="{severity}" ruleset="forward")
"""
FORMS = {
    "udp-rfc5424": 'protocol="udp" template="RSYSLOG_SyslogProtocol23Format"',
    "tcp-octet-counted-rfc5424": 'protocol="tcp" tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"',
    "tcp-traditional": 'protocol="tcp"',  # RSYSLOG_TraditionalForwardFormat, newline framing
}


RunRsyslog = Callable[[str, str, Path, str, str, str], None]


@pytest.fixture
def run_rsyslog(tmp_path: Path) -> Iterator[RunRsyslog]:
    """Starts rsyslogd with one imfile input forwarding by ``omfwd``; stopped (TERM, then KILL) at the end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(action: str, port: str, logfile: Path, tag: str, facility: str, severity: str) -> None:
        config = CONFIG.format(work=tmp_path / f"rsyslog-{len(processes)}", hostname=HOSTNAME, port=port,
                               action=action, logfile=logfile, tag=tag, facility=facility, severity=severity)
        processes.append(start_rsyslogd(config, tmp_path / f"rsyslog-{len(processes)}")[0])

    yield start
    for process in processes:
        stop_rsyslogd(process)


def wait_for(flow: LogFlow, service: str, count: int, rsyslog_out: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    total = -1
    while time.monotonic() < deadline:
        total = search(flow, service=service, limit=1)["total"]
        if total >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{total} of {count} events arrived; rsyslogd said:\n{rsyslog_out.read_text()[-3000:]}")


@pytest.mark.parametrize("form", list(FORMS))
def test_rsyslog_omfwd_forwards_loghub_lines(logflow: LogFlow, run_rsyslog: RunRsyslog, tmp_path: Path,
                                             form: str) -> None:
    system, tag, facility, severity, level = {
        "udp-rfc5424": ("OpenSSH", "sshd", "auth", "warning", "WARN"),
        "tcp-octet-counted-rfc5424": ("Linux", "linux-auth", "local3", "err", "ERROR"),
        "tcp-traditional": ("Zookeeper", "zookeeper", "daemon", "info", "INFO"),
    }[form]
    contents = [row["Content"] for row in loghub_rows(system) if row["Content"].isprintable()][:400]
    logfile = tmp_path / f"{system}.log"
    logfile.write_text("".join(f"{line}\n" for line in contents))
    port = free_udp_tcp_port()
    started = time.time()
    with listening(logflow, syslog_port=port) as listeners:
        run_rsyslog(FORMS[form], str(port), logfile, tag, facility, severity)
        out = tmp_path / "rsyslog-0" / "rsyslogd.out"
        wait_for(logflow, tag, len(contents), out)
        transport = "syslog_udp" if form.startswith("udp") else "syslog_tcp"
        counters = listeners.counters[transport]
        assert (counters.accepted, counters.rejected, counters.unparsed, counters.dropped) == (len(contents), 0, 0, 0)
    logs = search(logflow, service=tag)["logs"]
    assert len(logs) == len(contents)
    assert Counter(log["message"] for log in logs) == Counter(contents)
    assert {(log["host"], log["level"]) for log in logs} == {(HOSTNAME, level)}
    assert all(log["metadata"] == {"facility": facility} and "flags" not in log for log in logs)
    # rsyslog stamps each line when imfile reads it: the timestamps (RFC 3339, or BSD local time
    # without a year) must land in this test's own time window.
    stamps = {calendar.timegm(time.strptime(log["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) for log in logs}
    assert started - 2 <= min(stamps) and max(stamps) <= time.time() + 1
