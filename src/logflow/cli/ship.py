"""``logflow ship``: tail log files into LogFlow (like Filebeat/Promtail), or import them with ``--once``."""

from __future__ import annotations

import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from logflow.log_setup import setup_logging
from logflow.shipper.runner import ShipConfig, Shipper, ShipStats, StateLocked, default_state_dir
from logflow.shipper.tailer import DEFAULT_EXCLUDES

_STATUS_EVERY_S = 10.0


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def status_line(stats: ShipStats) -> str:
    """One line: files, events sent and rejected, bytes, rate, and why we wait (if we do)."""
    line = (f"files {stats.files} · sent {stats.sent:,} · rejected {stats.rejected:,} · "
            f"{_human(stats.bytes)} · {stats.rate:,.0f} events/s")
    if stats.waiting:
        line += f" · waiting: {stats.waiting}"
    return line


def _summary(console: Console, stats: ShipStats) -> None:
    console.print(status_line(stats).replace(" · waiting:", " · last wait:"))
    for reason in stats.rejections:
        console.print(f"  rejected: {reason}")
    if stats.rejected > len(stats.rejections):
        console.print(f"  ... and {stats.rejected - len(stats.rejections)} more rejected")
    if stats.fatal:
        console.print(f"[red]unsendable:[/red] {stats.fatal}")


@click.command("ship")
@click.argument("paths", nargs=-1, required=True)
@click.option("--service", required=True, help="Service name for events that do not carry their own")
@click.option("--target", envvar="LOGFLOW_SHIP_TARGET", default="http://127.0.0.1:8000", show_default=True,
              help="LogFlow API base URL [env LOGFLOW_SHIP_TARGET]")
@click.option("--api-key", envvar="LOGFLOW_API_KEY", default=None, help="Ingest API key [env LOGFLOW_API_KEY]")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where offsets are checkpointed [default ~/.local/state/logflow-ship]")
@click.option("--host", "host_name", default=None, help="Host for events without one [default: this host's name]")
@click.option("--multiline-start", default=None,
              help=r"Regex that starts an event; other lines join the previous one (e.g. '^\d{4}-' or '^\S')")
@click.option("--multiline-timeout", type=float, default=1.0, show_default=True,
              help="Seconds without new lines after which an open multi-line event is sent")
@click.option("--no-json", is_flag=True, help="Do not parse JSON lines (every line is plain text)")
@click.option("--no-level-detection", is_flag=True, help="Do not look for ERROR / level=warn in plain text")
@click.option("--exclude", multiple=True, help=f"File name glob to skip (repeatable) [default {DEFAULT_EXCLUDES}]")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--flush-interval", type=float, default=1.0, show_default=True, help="Max seconds an event waits")
@click.option("--scan-interval", type=float, default=1.0, show_default=True, help="Seconds between glob scans")
@click.option("--rotated-grace", type=float, default=10.0, show_default=True,
              help="Seconds a rotated-away file is still watched for late writes after its end")
@click.option("--give-up-after", type=float, default=None,
              help="Stop (exit 1) when LogFlow refuses a batch this long [default: never; 300 with --once]")
@click.option("--spool-max-mb", type=click.IntRange(0), default=256, show_default=True,
              help="Bound of the copies kept of files deleted before they were shipped")
@click.option("--once", is_flag=True, help="Read the files to their end, send everything, exit (import)")
@click.option("--quiet", is_flag=True, help="No live status line")
@click.option("--log-level", default="WARNING", show_default=True)
def ship(paths: tuple[str, ...], service: str, target: str, api_key: str | None, state_dir: Path | None,
         host_name: str | None, multiline_start: str | None, multiline_timeout: float, no_json: bool,
         no_level_detection: bool, exclude: tuple[str, ...], batch_size: int, flush_interval: float,
         scan_interval: float, rotated_grace: float, give_up_after: float | None, spool_max_mb: int, once: bool,
         quiet: bool, log_level: str) -> None:
    """Tail PATH_OR_GLOB... into LogFlow: follows rotation, resumes from checkpoints, joins multi-line events.

    Exit status with --once: 0 when everything was accepted; 1 when events were rejected or could not
    be sent (the summary lists why).
    """
    setup_logging(log_level.upper())
    if multiline_start:
        try:
            re.compile(multiline_start)
        except re.error as exc:
            raise click.BadParameter(f"not a regular expression: {exc}", param_hint="--multiline-start") from None
    config = ShipConfig(
        patterns=list(paths), service=service, target=target, api_key=api_key,
        state_dir=state_dir or default_state_dir(), host=host_name or socket.gethostname(),
        multiline_start=multiline_start, multiline_timeout_s=multiline_timeout, json_lines=not no_json,
        detect_levels=not no_level_detection, excludes=exclude or DEFAULT_EXCLUDES, batch_size=batch_size,
        flush_interval_s=flush_interval, scan_interval_s=scan_interval, rotated_grace_s=rotated_grace,
        give_up_after_s=(give_up_after if give_up_after is not None else 300.0 if once else None) or None,
        spool_max_bytes=spool_max_mb * 1024 * 1024, once=once,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console = Console(stderr=True)
    try:
        stats = _run(config, stop, console, quiet=quiet)
    except StateLocked as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _summary(console, stats)
    if stats.fatal or stats.rejected or (once and not stats.completed):
        sys.exit(1)


def _run(config: ShipConfig, stop: threading.Event, console: Console, *, quiet: bool) -> ShipStats:
    if config.once and console.is_terminal and not quiet:
        columns = (TextColumn("[bold]shipping"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[counts]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("ship", total=None, counts="")

            def show(stats: ShipStats) -> None:
                progress.update(task, total=stats.total_bytes or None, completed=stats.bytes,
                                counts=f"sent {stats.sent:,} rejected {stats.rejected:,}")

            return Shipper(config, stop=stop, on_progress=show).run()
    if console.is_terminal and not quiet:
        shipper = Shipper(config, stop=stop)
        with Live(console=console, refresh_per_second=2, get_renderable=lambda: Text(status_line(shipper.stats))):
            return shipper.run()
    # Not a terminal (a service manager, a pipe): a status line now and then instead of a live one.
    last = [time.monotonic()]

    def occasionally(stats: ShipStats) -> None:
        if not quiet and time.monotonic() - last[0] >= _STATUS_EVERY_S:
            last[0] = time.monotonic()
            console.print(status_line(stats))

    return Shipper(config, stop=stop, on_progress=occasionally).run()
