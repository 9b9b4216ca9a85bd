"""``logflow status``: the seed's pipeline-status.sh, for either shape."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from logflow.cli.common import load
from logflow.runtime import Runtime
from logflow.status import pipeline_status


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables")
@click.option("--sample", type=float, default=1.0, show_default=True,
              help="Seconds between two reads of the committed offsets, for the consumption rate (0: skip)")
def status(data_dir: Path | None, as_json: bool, sample: float) -> None:
    """Queue lag per partition, processor throughput, dead letters, store size and backend health."""
    settings = load(data_dir=data_dir)
    runtime = Runtime.build(settings, queue_writer=False)
    try:
        report = pipeline_status(runtime, sample_s=sample)
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console()
    q = report["queue"]
    console.print(f"[bold]queue[/] {q['kind']} {'healthy' if q['healthy'] else '[red]DOWN[/]'} {q['detail']}")
    table = Table("partition", "committed", "end", "lag")
    for p in q["partitions"]:
        table.add_row(str(p["partition"]), str(p["committed"]), str(p["end"]), str(p["lag"]))
    console.print(table)
    rate = "" if q["consumed_per_s"] is None else f"  consumed {q['consumed_per_s']:,} {q['offset_unit']}/s"
    console.print(f"total lag {q['total_lag']} {q['offset_unit']}  dead letters {q['dead_letters']}{rate}")
    if q["dead_letters"]:
        console.print("  see them: logflow dead-letters list\n  once the cause is fixed: logflow dead-letters replay")
    procs = Table("processor pid", "stored", "duplicates", "dead letters", "events/s", "store errors", "state")
    for p in report["processors"]:
        procs.add_row(str(p["pid"]), str(p["stored"]), str(p["duplicates"]), str(p["dead_letters"]),
                      str(p["events_per_s"]), str(p["store_errors"]), "stale" if p["stale"] else "running")
    console.print(procs)
    s = report["store"]
    console.print(f"[bold]store[/] {s['kind']} {'healthy' if s['healthy'] else '[red]DOWN[/]'} "
                  f"documents {s['documents']}  partitions {s['partitions']}  bytes {s['bytes_on_disk']}")
