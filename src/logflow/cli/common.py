"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from logflow.settings import Settings, SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_options(func: F) -> F:
    """``--data-dir``, ``--host``, ``--port`` overriding LOGFLOW_DATA_DIR/HOST/PORT."""
    func = click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                        help="Data directory [env LOGFLOW_DATA_DIR; default ./logflow-data]")(func)
    func = click.option("--port", type=int, default=None, help="Port [env LOGFLOW_PORT; default 8000]")(func)
    func = click.option("--host", default=None, help="Bind address [env LOGFLOW_HOST; default 127.0.0.1]")(func)
    return func


def load(**overrides: Any) -> Settings:
    """Settings or a clean exit with every problem listed (no traceback for bad configuration)."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
