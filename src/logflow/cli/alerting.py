"""``logflow alerting``: the alert engine as its own process (the distributed shape).

Run one or more: they share the metadata database, only the lease holder evaluates, and a
replacement takes over within one lease period if the leader dies (at once if it stops cleanly).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import click

from logflow.alerting import run_engine
from logflow.cli.common import load
from logflow.log_setup import setup_logging
from logflow.runtime import Runtime

log = logging.getLogger("logflow.cli")


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
@click.option("--interval", type=float, default=None,
              help="Seconds between evaluations [env LOGFLOW_ALERT_INTERVAL_S; default 30]")
def alerting(data_dir: Path | None, interval: float | None) -> None:
    """Run the alert engine: evaluate rules, track alerts, send notifications. SIGTERM stops it."""
    setup_logging()
    settings = load(data_dir=data_dir, alert_interval_s=interval)
    # The engine reads the store and the metadata database; it never writes to the queue.
    runtime = Runtime.build(settings, queue_writer=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("alerting %d started (store=%s database=%s)", os.getpid(), runtime.store.kind,
             runtime.database.dialect.name)
    try:
        run_engine(runtime, stop)
    finally:
        runtime.close()
