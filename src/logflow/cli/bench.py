"""``logflow bench``: run LogFlow as real processes and measure it end to end over HTTP."""

from __future__ import annotations

import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from logflow import __version__
from logflow.backends.errors import BackendError
from logflow.bench.ceiling import bulk_ceiling
from logflow.bench.cleanup import drop_indices, drop_kafka
from logflow.bench.cpus import CpuSplit, CpuSplitError, parse_cpus, pinned, plan_split
from logflow.bench.measure import (
    DAY_US,
    Dataset,
    IngestResult,
    Latency,
    admin_headers,
    ingest,
    make_dataset,
    query_suite,
    visibility,
    warm_up,
)
from logflow.bench.protocols import PROTOCOLS, ProtocolResult, run_protocol
from logflow.bench.servers import Deployment, free_port
from logflow.generator import GeneratorConfig, LogGenerator


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _deploy(shape: str, processors: int, data_dir: Path, syslog_port: int = 0) -> Deployment:
    port = free_port()
    deployment = Deployment(url=f"http://127.0.0.1:{port}")
    # The benchmark's own throwaway servers: open ingest and no rate limits (0 = off), so it measures
    # the pipeline, not auth. (The visibility probe alone polls ~6,000 times on OpenSearch.)
    env = {**os.environ, "LOGFLOW_PORT": str(port), "LOGFLOW_DATA_DIR": str(data_dir), "LOGFLOW_INGEST_OPEN": "true",
           "LOGFLOW_RATE_API_PER_MINUTE": "0", "LOGFLOW_RATE_INGEST_BYTES_PER_MINUTE": "0",
           "LOGFLOW_SYSLOG_PORT": str(syslog_port), "LOGFLOW_GELF_PORT": "0", "LOGFLOW_HOST": "127.0.0.1"}
    if shape == "embedded":
        for name in ("LOGFLOW_QUEUE_URL", "LOGFLOW_STORE_URL", "LOGFLOW_DATABASE_URL", "LOGFLOW_CACHE_URL"):
            env.pop(name, None)
        deployment.start(["serve"], env, data_dir.parent / "serve.log")
    else:
        missing = [n for n in ("LOGFLOW_QUEUE_URL", "LOGFLOW_STORE_URL") if n not in os.environ]
        if missing:
            raise click.UsageError(f"--shape distributed needs {', '.join(missing)} (eval \"$(scripts/stack.sh env)\")")
        unique = uuid.uuid4().hex[:8]
        env.update({"LOGFLOW_KAFKA_TOPIC": f"bench-{unique}", "LOGFLOW_KAFKA_DEAD_LETTER_TOPIC": f"bench-{unique}-dlq",
                    "LOGFLOW_STORE_INDEX_PREFIX": f"bench-{unique}", "LOGFLOW_PROCESSOR_GROUP": f"bench-{unique}"})
        deployment.run_id = f"bench-{unique}"
        deployment.start(["api"], env, data_dir.parent / "api.log")
        for i in range(processors):
            deployment.start(["processor", "--index", str(i)], env, data_dir.parent / f"processor-{i}.log")
    return deployment


@click.command()
@click.option("--events", type=int, default=1_000_000, show_default=True, help="Events in the dataset (24 h span)")
@click.option("--batch", type=int, default=5000, show_default=True, help="Events per ingest request")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Concurrent ingest clients")
@click.option("--repeat", type=int, default=30, show_default=True, help="Requests per query kind")
@click.option("--shape", type=click.Choice(["embedded", "distributed"]), default="embedded", show_default=True)
@click.option("--processors", type=int, default=1, show_default=True, help="Processor processes (distributed)")
@click.option("--work-dir", type=click.Path(path_type=Path), default=Path(".bench"), show_default=True)
@click.option("--markdown", type=click.Path(path_type=Path), default=None, help="Append a results section here")
@click.option("--protocols", default=None, metavar="LIST",
              help=f"Instead of the query suite, compare ingest protocols on the same events: 'all' or a "
                   f"comma-separated subset of {','.join(PROTOCOLS)} (--events each)")
@click.option("--engine-cpus", default=None, metavar="LIST",
              help="Distributed: pin OpenSearch (on this machine) to these CPUs, e.g. 1 or 2-3, and LogFlow's "
                   "processes and the load generators to the others, as separate nodes would be; the "
                   "engine's affinity is restored afterwards. Default: every process shares every CPU")
def bench(events: int, batch: int, concurrency: int, repeat: int, shape: str, processors: int, work_dir: Path,
          markdown: Path | None, protocols: str | None, engine_cpus: str | None) -> None:
    """Measure ingest (acknowledged and searchable), search and metrics latency, disk and memory.

    With --protocols: events/s of the same events through native NDJSON, Elasticsearch _bulk,
    OTLP/HTTP protobuf and syslog over TCP, one after another against one deployment.
    """
    console = Console(stderr=True)
    split: CpuSplit | None = None
    if engine_cpus is not None:
        if shape != "distributed" or protocols is not None:
            raise click.UsageError("--engine-cpus applies to --shape distributed without --protocols")
        try:
            cpus = parse_cpus(engine_cpus)
        except CpuSplitError as exc:
            raise click.BadParameter(str(exc), param_hint="--engine-cpus") from None
        try:  # before the dataset is made: a split that cannot be made is known in a second
            split = plan_split(os.environ.get("LOGFLOW_STORE_URL", ""), os.environ.get("LOGFLOW_QUEUE_URL", ""), cpus)
        except CpuSplitError as exc:
            raise click.ClickException(str(exc)) from None
    run_dir = work_dir / f"run-{int(time.time())}"
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    if protocols is not None:
        chosen = list(PROTOCOLS) if protocols == "all" else [p.strip() for p in protocols.split(",") if p.strip()]
        unknown = sorted(set(chosen) - set(PROTOCOLS))
        if unknown or not chosen:
            raise click.BadParameter(f"unknown {unknown}; choose from {', '.join(PROTOCOLS)}", param_hint="--protocols")
        _bench_protocols(console, chosen, events, batch, concurrency, shape, processors, data_dir, markdown)
        if shape == "embedded":
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    with _progress(console) as progress:
        task = progress.add_task("generating", total=events)
        dataset = make_dataset(events, batch, lambda n: progress.advance(task, n))
    console.print(f"dataset: {events:,} events, {dataset.raw_bytes / 2**20:,.1f} MiB NDJSON "
                  f"({dataset.raw_bytes / events:.0f} B/event)")
    if split is None:
        run = _measure(console, shape, processors, data_dir, dataset, concurrency, repeat)
        split_text = f"all {len(os.sched_getaffinity(0))} shared by every process"
    else:
        try:
            with pinned(split):
                console.print(split.describe())
                run = _measure(console, shape, processors, data_dir, dataset, concurrency, repeat)
        except CpuSplitError as exc:
            raise click.ClickException(str(exc)) from None
        split_text = split.describe()
    report = _report(shape, processors, events, batch, concurrency, repeat, dataset.raw_bytes, run, split_text,
                     engine_cpus)
    console.print(_table(run.latencies))
    click.echo(report)
    if markdown is not None:
        with markdown.open("a") as fh:
            fh.write(report + "\n")
    if shape == "embedded":
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class _Run:
    """What one benchmark run measured, for the report."""

    result: IngestResult
    latencies: list[Latency]
    disk: int
    documents: int
    rss: dict[str, int]
    ceilings: list[float]


def _measure(console: Console, shape: str, processors: int, data_dir: Path, dataset: Dataset, concurrency: int,
             repeat: int) -> _Run:
    # The ceiling is measured before and after LogFlow's run and the better one counts: one
    # measurement of the engine alone varies by ±10 % (JIT, garbage collection, merges).
    ceilings: list[float] = []

    def measure_ceiling() -> None:
        if shape == "distributed":
            console.print(f"measuring the _bulk ceiling ({len(ceilings) + 1} of 2) ...")
            ceilings.append(bulk_ceiling(os.environ["LOGFLOW_STORE_URL"], dataset.bodies)[0])

    measure_ceiling()
    deployment = _deploy(shape, processors, data_dir)
    try:
        deployment.wait_healthy()
        warm_up(deployment.url, {})
        with _progress(console) as progress:
            task = progress.add_task("ingesting", total=dataset.events)
            result = ingest(deployment.url, dataset, concurrency, {}, lambda n: progress.advance(task, n))
        console.print("running queries ...")
        admin = admin_headers(deployment.url, os.environ.get("LOGFLOW_ADMIN_PASSWORD", "admin123"))
        latencies = [visibility(deployment.url, repeat, {}), *query_suite(deployment.url, repeat, admin)]
        status = httpx.get(f"{deployment.url}/api/v1/pipeline/status", timeout=30).json()
        rss = deployment.peak_rss()
    finally:
        deployment.stop()
        _drop_run(deployment)
    measure_ceiling()
    store = status["store"]
    return _Run(result, latencies, int(store["bytes_on_disk"]), int(store["documents"]), rss, ceilings)


def _drop_run(deployment: Deployment) -> None:
    """Delete a distributed run's topics, consumer group and indices from the user's engines.

    Runs after the run, also after a failed one; a cleanup that fails is reported, not raised,
    so it neither hides the run's own error nor loses its report.
    """
    if deployment.run_id is None:
        return
    name = deployment.run_id
    try:
        drop_kafka(os.environ["LOGFLOW_QUEUE_URL"], [name, f"{name}-dlq"], [name])
        drop_indices(os.environ["LOGFLOW_STORE_URL"], name)
    except (BackendError, httpx.HTTPError) as exc:
        click.echo(f"warning: could not delete the run's topics and indices named {name}*: {exc}", err=True)


def _table(latencies: list[Latency]) -> Table:
    table = Table("query", "p50 ms", "p95 ms", "result")
    for lat in latencies:
        table.add_row(lat.name, f"{lat.p50:.1f}", f"{lat.p95:.1f}", lat.detail)
    return table


def _report(shape: str, processors: int, events: int, batch: int, concurrency: int, repeat: int, raw: int,
            run: _Run, cpus: str, engine_cpus: str | None) -> str:
    result, latencies, disk, documents, rss, ceilings = (
        run.result, run.latencies, run.disk, run.documents, run.rss, run.ceilings)
    mib = raw / 2**20
    command = (f"logflow bench --shape {shape} --events {events} --batch {batch} --concurrency {concurrency} "
               f"--repeat {repeat}" + (f" --processors {processors}" if shape == "distributed" else "")
               + (f" --engine-cpus {engine_cpus}" if engine_cpus is not None else ""))
    lines = [
        f"### {shape} shape, {events:,} events — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- Command: `{command}` (LogFlow {__version__})",
        f"- Machine: {_machine()}",
        f"- Dataset: {events:,} generated events over 24 h ({raw / events:.0f} B/event NDJSON, {mib:,.1f} MiB)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| CPUs | {cpus} |",
        f"| ingest, acknowledged (HTTP 202) | {result.acked_rate:,.0f} events/s, {mib / result.acked_s:,.1f} MiB/s |",
        f"| ingest, acknowledged → searchable | {result.searchable_rate:,.0f} events/s "
        f"({result.searchable_s:,.1f} s for all) |",
        f"| rejected / 503-507 retries | {result.rejected} / {result.retries} |",
        *(
            [f"| OpenSearch `_bulk` ceiling, plain client, 2 connections | {max(ceilings):,.0f} events/s, the "
             f"better of {ceilings[0]:,.0f} (before LogFlow's run) and {ceilings[1]:,.0f} (after) → LogFlow "
             f"reaches {100 * result.searchable_rate / max(ceilings):.0f} % of it |"]
            if ceilings
            else []
        ),
        f"| documents stored | {documents:,} |",
        f"| disk | {disk / 2**20:,.1f} MiB = {disk / max(documents, 1):.0f} B/event = {disk / raw:.2f} × raw NDJSON |",
        f"| peak RSS | {', '.join(f'{name.split()[-1]} {v / 2**20:,.0f} MiB' for name, v in rss.items() if v)} |",
        "",
        "| query | p50 ms | p95 ms | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {lat.name} | {lat.p50:.1f} | {lat.p95:.1f} | {lat.detail} |" for lat in latencies]
    return "\n".join(lines) + "\n"


def _bench_protocols(console: Console, protocols: list[str], events: int, batch: int, concurrency: int, shape: str,
                     processors: int, data_dir: Path, markdown: Path | None) -> None:
    now = time.time_ns() // 1000
    gen = LogGenerator(GeneratorConfig(seed=7, start_us=now - DAY_US // 2, rate=events / 3600))
    batches = [gen.batch(min(batch, events - done)) for done in range(0, events, batch)]
    syslog_port = free_port()
    deployment = _deploy(shape, processors, data_dir, syslog_port=syslog_port)
    results: list[ProtocolResult] = []
    try:
        deployment.wait_healthy()
        warm_up(deployment.url, {})
        for protocol in protocols:
            with _progress(console) as progress:
                task = progress.add_task(protocol, total=events)

                def advance(n: int, task: TaskID = task, progress: Progress = progress) -> None:
                    progress.advance(task, n)

                results.append(run_protocol(protocol, deployment.url, ("127.0.0.1", syslog_port), batches,
                                            concurrency, advance))
    finally:
        deployment.stop()
        _drop_run(deployment)
    command = (f"logflow bench --protocols {','.join(protocols)} --shape {shape} --events {events} --batch {batch} "
               f"--concurrency {concurrency}" + (f" --processors {processors}" if shape == "distributed" else ""))
    native = next((r for r in results if r.protocol == "native"), None)
    lines = [
        f"### ingest protocols, {shape} shape, {events:,} events each — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- Command: `{command}` (LogFlow {__version__})",
        f"- Machine: {_machine()}",
        f"- Dataset: {events:,} generated events, the same for every protocol, encoded before timing",
        "",
        "| protocol | wire B/event | acknowledged events/s | searchable events/s | vs native |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{100 * r.searchable_rate / native.searchable_rate:.0f} %" if native else "–"
        lines.append(f"| {r.protocol} | {r.wire_bytes / r.events:.0f} | {r.acked_rate:,.0f} | "
                     f"{r.searchable_rate:,.0f} | {ratio} |")
    report = "\n".join(lines) + "\n"
    click.echo(report)
    if markdown is not None:
        with markdown.open("a") as fh:
            fh.write(report + "\n")
