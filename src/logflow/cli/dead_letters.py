"""``logflow dead-letters``: list the events the store refused, and replay them once fixed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from logflow.backends.errors import BackendError, BackendUnavailable, ReplayInProgress
from logflow.backends.queue.base import EventQueue
from logflow.backends.queue.offsets import check_group
from logflow.backends.queue.segments import LogLocked
from logflow.cli.common import load
from logflow.ingest.replay import DEFAULT_REPLAY_GROUP, ReplayInterrupted, ReplayReport, replay_dead_letters
from logflow.runtime import build_queue
from logflow.settings import Settings

_PREVIEW = 120


def _open_queue(settings: Settings, *, writer: bool) -> EventQueue:
    try:
        return build_queue(settings, writer=writer)
    except LogLocked as exc:
        # The embedded queue has one writer: the running `logflow serve` itself.
        raise click.ClickException(
            f"{exc}. While LogFlow runs, replay through it: "
            "POST /api/v1/pipeline/dead-letters/replay as an admin"
        ) from None
    except BackendUnavailable as exc:
        raise click.ClickException(f"queue unavailable: {exc}") from None


@click.group("dead-letters")
def dead_letters() -> None:
    """Events the store refused: list them, replay them onto the queue once the cause is fixed."""


def _valid_group(_: click.Context, __: click.Parameter, value: str) -> str:
    try:
        check_group(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@dead_letters.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True, help="Newest N letters")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (reason, at, payload) instead of a table")
def list_letters(data_dir: Path | None, limit: int, as_json: bool) -> None:
    """The newest dead letters with their reason, newest first."""
    queue = _open_queue(load(data_dir=data_dir), writer=False)
    try:
        letters = queue.read_dead_letters(limit)
    except BackendUnavailable as exc:
        raise click.ClickException(f"cannot read dead letters: {exc}") from None
    finally:
        queue.close()
    rows = [
        (datetime.fromtimestamp(letter.at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
         letter.reason, letter.value.decode("utf-8", errors="replace"))
        for letter in letters
    ]
    if as_json:
        for at, reason, payload in rows:
            click.echo(json.dumps({"at": at, "reason": reason, "payload": payload}))
        return
    table = Table("at", "reason", "payload (start)")
    for at, reason, payload in rows:
        table.add_row(at, reason, payload[:_PREVIEW])
    Console().print(table)
    click.echo(f"{len(rows)} dead letter(s) shown")


@dead_letters.command("replay")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed, by reason")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Replay at most N letters")
@click.option("--group", default=DEFAULT_REPLAY_GROUP, show_default=True, callback=_valid_group,
              help="Replay group: remembers how far replays got")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
def replay(data_dir: Path | None, dry_run: bool, limit: int | None, group: str, as_json: bool) -> None:
    """Put dead letters not replayed yet back on the queue, oldest first, for the processors to
    store again (each event once: the store keeps events by id)."""
    queue = _open_queue(load(data_dir=data_dir), writer=True)
    console = Console(stderr=True)
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=as_json or not console.is_terminal) as bar:
            task = bar.add_task("replay", total=None)

            def started(pending: int) -> None:
                bar.update(task, total=pending if limit is None else min(limit, pending))

            report = replay_dead_letters(queue, group=group, limit=limit, dry_run=dry_run, on_start=started,
                                         progress=lambda n: bar.advance(task, n))
    except ReplayInProgress as exc:
        raise click.ClickException(str(exc)) from None
    except ReplayInterrupted as exc:
        _print_report(exc.report)
        raise click.ClickException(f"replay stopped part way (what is reported above stays replayed): {exc.cause}"
                                   ) from None
    except BackendError as exc:
        raise click.ClickException(f"cannot read the dead letters: {exc}") from None
    finally:
        queue.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)


def _print_report(report: ReplayReport) -> None:
    verb = "would replay" if report.dry_run else "replayed"
    count = report.read - report.unreadable if report.dry_run else report.replayed
    click.echo(f"{verb} {count} of {report.pending} pending dead letter(s); "
               f"{report.unreadable} unreadable (passed over); {report.remaining} remaining")
    if report.reasons:
        table = Table("count", "reason")
        for reason, n in report.reasons.most_common(20):
            table.add_row(str(n), reason)
        Console().print(table)
