"""``logflow kafka-source``: consume existing Kafka topics of JSON logs into LogFlow.

Runs next to ``logflow api`` and ``logflow processor`` in the distributed shape; several instances
with the same group share the source partitions. See docs/protocols/kafka-source.md.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from logflow.backends.errors import BackendUnavailable
from logflow.cli.common import load
from logflow.ingest.protocols.kafka_source import KafkaSource, SourceConfig, SourceConfigError
from logflow.log_setup import setup_logging
from logflow.runtime import Runtime

log = logging.getLogger("logflow.cli")


def _report(source: KafkaSource, stop: threading.Event, interval_s: float) -> None:
    """Print the status line every ``interval_s`` until ``stop``."""
    while not stop.wait(interval_s):
        click.echo(source.counters.line(), err=True)


@click.command("kafka-source")
@click.option("--topics", default=None,
              help="Comma-separated topics to consume [env LOGFLOW_KAFKA_SOURCE_TOPICS]")
@click.option("--group", default=None,
              help="Consumer group; instances in one group share partitions "
                   "[env LOGFLOW_KAFKA_SOURCE_GROUP; default logflow-source]")
@click.option("--source-url", default=None,
              help="kafka://host:port[,host:port][?librdkafka.option=value] of the cluster to consume "
                   "[env LOGFLOW_KAFKA_SOURCE_URL; default: the brokers of LOGFLOW_QUEUE_URL]")
@click.option("--batch", type=click.IntRange(1, 50_000), default=1000, show_default=True,
              help="Most messages per pipeline submit (and per offset commit)")
@click.option("--status-interval", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds between status lines on stderr")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
def kafka_source(topics: str | None, group: str | None, source_url: str | None, batch: int,
                 status_interval: float, data_dir: Path | None) -> None:
    """Consume Kafka topics of JSON logs (one object, an array or NDJSON per message) into LogFlow.

    Offsets are committed only once the events are durable in LogFlow's queue; rejected items go
    to the dead-letter topic. SIGTERM finishes the in-flight batch, commits and leaves the group.
    """
    setup_logging()
    settings = load(data_dir=data_dir, kafka_source_topics=topics, kafka_source_group=group,
                    kafka_source_url=source_url)
    try:
        config = SourceConfig.from_settings(settings)
    except SourceConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    try:
        runtime = Runtime.build(settings)
    except BackendUnavailable as exc:
        # E.g. the embedded queue's single writer is another process (`logflow serve`/`api`).
        click.echo(f"error: cannot open LogFlow's queue: {exc}", err=True)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        source = KafkaSource(runtime, config, batch_size=batch)
        reporter = threading.Thread(target=_report, args=(source, stop, status_interval),
                                    name="logflow-source-status", daemon=True)
        reporter.start()
        log.info("kafka-source %d started (queue=%s)", os.getpid(), runtime.queue.kind)
        source.run(stop)
        click.echo(source.counters.line() + " (stopped)", err=True)
    except BackendUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        stop.set()
        runtime.close()
