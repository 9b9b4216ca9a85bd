"""``logflow generate``: realistic demo traffic sent to a running LogFlow over HTTP."""

from __future__ import annotations

import time
from collections import Counter

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from logflow.generator import DEFAULT_SERVICES, GeneratorConfig, LogGenerator, to_ndjson


@click.command()
@click.option("--rate", type=float, default=100.0, show_default=True, help="Events per second")
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds to run")
@click.option("--services", default=",".join(DEFAULT_SERVICES), show_default=True, help="Comma-separated names")
@click.option("--target", default="http://127.0.0.1:8000", show_default=True, help="LogFlow base URL")
@click.option("--api-key", default=None, envvar="LOGFLOW_API_KEY", help="Bearer token or API key for ingest")
@click.option("--batch", type=int, default=500, show_default=True, help="Events per request (at most)")
@click.option("--incident", type=click.Choice(["none", "error_spike", "latency_storm"]), default="none",
              help="Start an incident right away (random ones happen anyway)")
@click.option("--seed", type=int, default=None, help="Deterministic output")
def generate(rate: float, duration: float, services: str, target: str, api_key: str | None, batch: int,
             incident: str, seed: int | None) -> None:
    """Send realistic logs: request flows across services, level mix, and occasional incidents."""
    if rate <= 0 or duration <= 0:
        raise click.BadParameter("rate and duration must be positive")
    names = tuple(s.strip() for s in services.split(",") if s.strip())
    gen = LogGenerator(GeneratorConfig(services=names, seed=seed))
    if incident != "none":
        gen.start_incident(incident)
    headers = {"Content-Type": "application/x-ndjson"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    total = int(rate * duration)
    sent = rejected = failed = 0
    levels: Counter[str] = Counter()
    console = Console(stderr=True)
    started = time.monotonic()
    columns = (TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with httpx.Client(base_url=target, timeout=30.0) as client, Progress(*columns, console=console) as progress:
        task = progress.add_task("send", total=total, rate="")
        while sent + failed < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            n = min(batch, due - sent - failed)
            if n <= 0:
                time.sleep(min(0.05, 1.0 / rate))
                continue
            events = gen.batch(n)
            try:
                resp = client.post("/api/v1/ingest", content=to_ndjson(events), headers=headers)
            except httpx.HTTPError as exc:
                console.print(f"[red]request failed:[/] {exc}")
                failed += n
                time.sleep(1.0)
                continue
            if resp.status_code in (202, 207):
                body = resp.json()
                sent += body["accepted"]
                rejected += body["rejected"]
                failed += body["rejected"]
                levels.update(str(e["level"]).upper() for e in events)
            else:
                console.print(f"[red]HTTP {resp.status_code}:[/] {resp.text[:200]}")
                failed += n
                time.sleep(float(resp.headers.get("Retry-After", "1")))
            elapsed = time.monotonic() - started
            progress.update(task, completed=sent + failed, rate=f"{sent / max(elapsed, 1e-9):,.0f} ev/s")
    elapsed = time.monotonic() - started
    console.print(f"sent {sent:,} events in {elapsed:.1f}s ({sent / elapsed:,.0f}/s); rejected {rejected:,}; "
                  f"failed {failed - rejected:,}; incidents {gen.incidents_started}")
    console.print("levels as sent: " + ", ".join(f"{k} {v:,}" for k, v in levels.most_common()))
