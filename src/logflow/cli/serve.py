"""``logflow serve`` (all in one), ``logflow api`` and ``logflow processor``."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn
from fastapi import FastAPI

from logflow.alerting import run_engine
from logflow.api.http_protocol import half_close_tolerant_http
from logflow.app import create_app
from logflow.auth.errors import StartupRefused
from logflow.backends.errors import BackendUnavailable
from logflow.cli.common import load, settings_options
from logflow.cli.supervise import ChildSupervisor
from logflow.ingest.listeners import ListenerConfig, ListenerError, Listeners
from logflow.ingest.processor import Processor
from logflow.log_setup import setup_logging
from logflow.processes import die_with_parent
from logflow.runtime import Runtime
from logflow.settings import Settings
from logflow.status import PROCESSOR_STATUS_FILE

log = logging.getLogger("logflow.cli")


def run_processor(settings: Settings, *, stop: threading.Event | None = None, index: int = 0) -> None:
    """Run one processor loop until SIGTERM/SIGINT (or ``stop``)."""
    runtime = Runtime.build(settings, queue_writer=False)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    suffix = "" if index == 0 else f"-{index}"
    own_process = threading.current_thread() is threading.main_thread()
    processor = Processor(
        runtime.queue, runtime.store, group=settings.processor_group, batch_size=settings.processor_batch,
        retention_s=settings.retention_days * 86400, retention_check_s=settings.retention_check_s,
        status_path=settings.data_dir / PROCESSOR_STATUS_FILE.replace(".json", f"{suffix}.json"),
        prepare_worker=settings.processor_prepare_worker,
        # With the thresholds below, cyclic garbage (each HTTP request's) waits for this.
        collect_every_s=2.0 if own_process else None,
    )
    log.info("processor %d started (queue=%s store=%s)", os.getpid(), runtime.queue.kind, runtime.store.kind)
    freeze_startup_heap()
    if own_process:
        # A process of its own: its garbage is acyclic batch data that reference counting frees,
        # yet each batch's ~100 k new objects set off thousands of young-generation collections
        # (measured: 2,658 per 300 k events, ~4 % of the processor's time). Collect far less often.
        gc.set_threshold(50_000, 20, 1_000)
    try:
        processor.run(stop)
    finally:
        runtime.close()
        log.info("processor %d stopped", os.getpid())


def _child_processor(settings: Settings, parent: int) -> None:
    die_with_parent()
    setup_logging()
    stop = threading.Event()

    def watch_parent() -> None:  # belt and braces where prctl is unavailable
        while not stop.is_set():
            if os.getppid() != parent:
                stop.set()
            time.sleep(0.5)

    threading.Thread(target=watch_parent, daemon=True).start()
    run_processor(settings, stop=stop)


def _demo_loop(runtime: Runtime, stop: threading.Event, rate: float) -> None:
    from logflow.generator import GeneratorConfig, LogGenerator

    backfill_s = 3600
    gen = LogGenerator(GeneratorConfig(start_us=time.time_ns() // 1000 - backfill_s * 1_000_000, rate=5.0))
    # An hour of history first, so charts and metrics have something to show at once.
    for _ in range(int(backfill_s * 5.0 / 500)):
        runtime.pipeline.submit_values(gen.batch(500))
    live = LogGenerator(GeneratorConfig(rate=rate))
    while not stop.wait(1.0):
        runtime.pipeline.submit_values(live.batch(max(1, int(rate))))


def _start_kafka_source(runtime: Runtime, stop: threading.Event) -> threading.Thread | None:
    """With LOGFLOW_KAFKA_SOURCE_TOPICS set, consume them in this process (the embedded queue has one writer).

    Exits with status 2 when the source is misconfigured; None when no topics are set.
    """
    if not runtime.settings.kafka_source_topics:
        return None
    # Imported here: confluent-kafka is an optional extra the embedded install may not have.
    from logflow.ingest.protocols.kafka_source import KafkaSource, SourceConfig, SourceConfigError

    try:
        source = KafkaSource(runtime, SourceConfig.from_settings(runtime.settings))
    except (SourceConfigError, BackendUnavailable) as exc:
        click.echo(f"error: Kafka source: {exc}", err=True)
        runtime.close()
        sys.exit(2)
    thread = threading.Thread(target=source.run, args=(stop,), daemon=True, name="kafka-source")
    thread.start()
    return thread


def build_app(runtime: Runtime, *, ssl_certfile: str | None, ssl_keyfile: str | None) -> FastAPI:
    """The app after the start-up security checks; a refused start exits with status 2 and the reasons.

    The syslog/GELF listeners bind their ports here, before the server and the processor start, so a
    port in use stops start-up with a message naming the port and the setting to change.
    """
    settings = runtime.settings
    if bool(ssl_certfile) != bool(ssl_keyfile):
        runtime.close()
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    listeners = Listeners(runtime.pipeline, ListenerConfig.from_settings(settings))
    try:
        app = create_app(runtime, listeners=listeners)  # the security checks first
        listeners.bind()
    except (StartupRefused, ListenerError) as exc:
        listeners.release()
        runtime.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if settings.env == "production" and not ssl_certfile:
        log.warning("SECURITY: serving plain HTTP in production: pass --ssl-certfile/--ssl-keyfile or put a "
                    "TLS-terminating proxy in front (tokens and API keys travel in headers)")
    return app


def freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, OpenAPI and pydantic schemas, routes) out of the GC's reach.

    A full collection otherwise walks those ~300k objects again and again: measured, it turned a 35 ms
    1-minute timeseries into 127 ms whenever it struck. Requests allocate and free their own objects as
    before; only the long-lived start-up heap is exempt.
    """
    gc.collect()
    gc.freeze()


def serve_api(settings: Settings, app: FastAPI, *, ssl_certfile: str | None, ssl_keyfile: str | None,
              access_log: bool) -> None:
    freeze_startup_heap()
    # An ingest request of 5,000 events makes ~40 k short-lived objects (parsed lines, events,
    # results) that reference counting frees; at the default threshold of 700 they set off
    # dozens of young-generation collections each. Measured at 1 M events: 16.0 -> 13.4 µs of
    # API CPU per event. Cyclic garbage is still collected, every 50 k allocations.
    gc.set_threshold(50_000, 20, 1_000)
    # half_close_tolerant_http: GELF HTTP clients (graypy, pygelf) close without reading the answer.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=access_log,
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, timeout_graceful_shutdown=10,
                http=half_close_tolerant_http())


listener_options = [
    click.option("--syslog-port", type=click.IntRange(0, 65535), default=None,
                 help="Syslog UDP+TCP port, 0 = off [env LOGFLOW_SYSLOG_PORT; default 5514]"),
    click.option("--gelf-port", type=click.IntRange(0, 65535), default=None,
                 help="GELF UDP port, 0 = off [env LOGFLOW_GELF_PORT; default 12201]"),
]

tls_options = [
    click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate"),
    click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS private key"),
    click.option("--access-log/--no-access-log", default=False, help="Log every request"),
]


F = TypeVar("F", bound=Callable[..., Any])


def with_tls(func: F) -> F:
    for option in reversed(tls_options):
        func = option(func)
    return func


def with_listeners(func: F) -> F:
    for option in reversed(listener_options):
        func = option(func)
    return func


@click.command()
@settings_options
@click.option("--demo", is_flag=True, help="Also generate demo logs in-process (an hour of history, then live)")
@click.option("--demo-rate", type=float, default=20.0, show_default=True, help="Demo events per second")
@with_listeners
@with_tls
def serve(host: str | None, port: int | None, data_dir: Path | None, demo: bool, demo_rate: float,
          syslog_port: int | None, gelf_port: int | None, ssl_certfile: str | None, ssl_keyfile: str | None,
          access_log: bool) -> None:
    """Run everything in one command: API, syslog/GELF listeners, processor (a child process), alerting, retention.

    With LOGFLOW_KAFKA_SOURCE_TOPICS (and LOGFLOW_KAFKA_SOURCE_URL) set, it also consumes those Kafka topics.
    """
    setup_logging()
    settings = load(host=host, port=port, data_dir=data_dir, syslog_port=syslog_port, gelf_port=gelf_port)
    runtime = Runtime.build(settings)
    # The security checks run (and may refuse) before the processor child starts.
    app = build_app(runtime, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    stop = threading.Event()
    source_done = _start_kafka_source(runtime, stop)  # a bad source configuration stops start-up here
    processor_child = ChildSupervisor("processor", _child_processor, (settings, os.getpid()))
    processor_child.start()  # and started again should it die
    # Alert rules are evaluated in this process; a lease keeps it to one evaluator per database.
    threading.Thread(target=run_engine, args=(runtime, stop), daemon=True, name="alerting").start()
    if demo:
        threading.Thread(target=_demo_loop, args=(runtime, stop, demo_rate), daemon=True, name="demo").start()
    scheme = "https" if ssl_certfile else "http"
    click.echo(f"LogFlow on {scheme}://{settings.host}:{settings.port} (data in {settings.data_dir.resolve()})",
               err=True)
    try:
        serve_api(settings, app, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, access_log=access_log)
    finally:
        stop.set()
        if source_done is not None:
            source_done.join(timeout=30)  # the in-flight batch is committed before the queue closes
        processor_child.stop(timeout_s=15)
        runtime.close()


@click.command()
@settings_options
@with_listeners
@with_tls
def api(host: str | None, port: int | None, data_dir: Path | None, syslog_port: int | None, gelf_port: int | None,
        ssl_certfile: str | None, ssl_keyfile: str | None, access_log: bool) -> None:
    """Run the HTTP API and the syslog/GELF listeners (distributed shape: run processors separately)."""
    setup_logging()
    settings = load(host=host, port=port, data_dir=data_dir, syslog_port=syslog_port, gelf_port=gelf_port)
    runtime = Runtime.build(settings)
    app = build_app(runtime, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    try:
        serve_api(settings, app, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, access_log=access_log)
    finally:
        runtime.close()


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
@click.option("--index", type=int, default=0, help="Distinguishes the status file of several local processors")
def processor(data_dir: Path | None, index: int) -> None:
    """Run one processor: queue → store. With Kafka, run several; they share the partitions."""
    setup_logging()
    run_processor(load(data_dir=data_dir), index=index)
