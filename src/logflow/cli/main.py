"""Entry point: ``logflow <command>``."""

from __future__ import annotations

import click

from logflow import __version__
from logflow.cli.alerting import alerting
from logflow.cli.bench import bench
from logflow.cli.db import db
from logflow.cli.dead_letters import dead_letters
from logflow.cli.generate import generate
from logflow.cli.kafka_source import kafka_source
from logflow.cli.serve import api, processor, serve
from logflow.cli.ship import ship
from logflow.cli.status import status
from logflow.cli.users import api_keys_group, users_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logflow")
def cli() -> None:
    """LogFlow: log ingest, search, metrics and alerting.

    Start with `logflow serve --demo` and open http://localhost:8000/docs.
    """


for command in (serve, api, processor, kafka_source, status, generate, bench, db, users_group, api_keys_group,
                alerting, ship, dead_letters):
    cli.add_command(command)
