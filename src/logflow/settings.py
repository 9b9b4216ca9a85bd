"""All configuration, from ``LOGFLOW_*`` environment variables and an optional TOML file.

Backends are chosen by URL scheme here, once: ``runtime.py`` turns these URLs into adapters and
nothing else in the code base looks at a scheme.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QUEUE_SCHEMES = ("embedded", "kafka")
STORE_SCHEMES = ("embedded", "opensearch", "elasticsearch", "http", "https")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
CACHE_SCHEMES = ("memory", "redis", "rediss")


class SettingsError(Exception):
    """Configuration is invalid; the message lists every problem, one per line."""


def _check_scheme(name: str, url: str, allowed: tuple[str, ...]) -> str:
    scheme = urlsplit(url).scheme if "://" in url else url
    if scheme not in allowed:
        raise ValueError(f"unknown scheme {scheme!r} in {url!r}; valid schemes: {', '.join(allowed)}")
    return url


class Settings(BaseSettings):
    """LogFlow settings. Every field maps to ``LOGFLOW_<NAME>`` (e.g. ``LOGFLOW_QUEUE_URL``)."""

    model_config = SettingsConfigDict(env_prefix="LOGFLOW_", extra="forbid", validate_default=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./logflow-data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    queue_url: str = "embedded://"
    store_url: str = "embedded://"
    database_url: str = ""  # default: sqlite file in data_dir
    cache_url: str = "memory://"

    # Kafka
    kafka_topic: str = "logflow-events"
    kafka_dead_letter_topic: str = "logflow-dead-letters"
    kafka_partitions: int = Field(6, ge=1, le=1024)
    # OpenSearch / Elasticsearch
    store_index_prefix: str = "logflow"
    store_shards: int = Field(1, ge=1, le=64)
    store_replicas: int = Field(0, ge=0, le=16)

    retention_days: int = Field(7, ge=1, le=3650)
    retention_check_s: float = Field(300.0, gt=0)

    # Ingest limits (see docs/ingest.md)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_event_bytes: int = Field(256 * 1024, ge=256)
    max_fields: int = Field(200, ge=1)
    max_depth: int = Field(8, ge=1, le=64)
    max_future_skew_s: int = Field(24 * 3600, ge=0)
    max_batch_events: int = Field(50_000, ge=1)

    # Embedded queue
    queue_max_backlog_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    min_free_disk_bytes: int = Field(256 * 1024 * 1024, ge=0)

    # Processor
    processor_batch: int = Field(5000, ge=1, le=100_000)
    processor_group: str = "logflow-processors"

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, v: str) -> str:
        return _check_scheme("queue_url", v, QUEUE_SCHEMES)

    @field_validator("store_url")
    @classmethod
    def _store(cls, v: str) -> str:
        return _check_scheme("store_url", v, STORE_SCHEMES)

    @field_validator("database_url")
    @classmethod
    def _database(cls, v: str) -> str:
        return v if v == "" else _check_scheme("database_url", v, DATABASE_SCHEMES)

    @field_validator("cache_url")
    @classmethod
    def _cache(cls, v: str) -> str:
        return _check_scheme("cache_url", v, CACHE_SCHEMES)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"


def _from_file(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    # Accept both a flat file and a [logflow] table.
    table = raw.get("logflow", raw)
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: expected a table of settings")
    return table


def load_settings(**overrides: Any) -> Settings:
    """Settings from (lowest to highest precedence) a TOML file, the environment, explicit overrides.

    The TOML file is ``LOGFLOW_CONFIG`` if set, else ``logflow.toml`` in the working directory
    if present. Raises SettingsError with one readable line per invalid value.
    """
    values: dict[str, Any] = {}
    config_path = os.environ.get("LOGFLOW_CONFIG")
    candidate = Path(config_path) if config_path else Path("logflow.toml")
    if config_path and not candidate.exists():
        raise SettingsError(f"LOGFLOW_CONFIG={config_path}: file not found")
    if candidate.exists():
        values.update(_from_file(candidate))
    env_names = {f"LOGFLOW_{name.upper()}" for name in Settings.model_fields}
    for key in list(values):
        if f"LOGFLOW_{key.upper()}" in os.environ and f"LOGFLOW_{key.upper()}" in env_names:
            values.pop(key)  # the environment wins over the file
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"LOGFLOW_{field.upper()}: {msg}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
