"""All configuration, from ``LOGFLOW_*`` environment variables and an optional TOML file.

Backends are chosen by URL scheme here, once: ``runtime.py`` turns these URLs into adapters and
nothing else in the code base looks at a scheme.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

    # populate_by_name: fields with seed aliases (SECRET_KEY…) are still set by name from files/overrides.
    model_config = SettingsConfigDict(env_prefix="LOGFLOW_", extra="forbid", validate_default=True,
                                      populate_by_name=True)

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
    # Kafka as a source: consume JSON logs other systems already produce (distributed shape).
    kafka_source_topics: str = ""  # comma-separated; empty = off
    kafka_source_url: str = ""  # kafka://host:port[,…]; default: the brokers of queue_url
    kafka_source_group: str = "logflow-source"
    # Network listeners of `serve` and `api` (0 turns one off). They accept without credentials:
    # bind them (LOGFLOW_LISTEN_HOST) where only trusted senders reach, or use syslog over TLS.
    listen_host: str = ""  # default: host
    syslog_port: int = Field(5514, ge=0, le=65535)  # UDP and TCP
    syslog_tls_port: int = Field(0, ge=0, le=65535)  # e.g. 6514; needs syslog_tls_cert/key
    syslog_tls_cert: str = ""
    syslog_tls_key: str = ""
    gelf_port: int = Field(12201, ge=0, le=65535)  # UDP
    # OpenSearch / Elasticsearch
    store_index_prefix: str = "logflow"
    store_shards: int = Field(1, ge=1, le=64)
    store_replicas: int = Field(0, ge=0, le=16)
    # _bulk requests one processor sends at once: the engine indexes one request per shard on one
    # write thread, so with one request at a time a one-shard index keeps one core busy at most.
    store_bulk_concurrency: int = Field(2, ge=1, le=16)

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
    # 10,000: with the embedded store's prepare helper, fewer and larger batches overlap better
    # (1 M events through the bench: 48.3 k -> 53.8 k events/s searchable against 5,000).
    processor_batch: int = Field(10_000, ge=1, le=100_000)
    processor_group: str = "logflow-processors"
    # The embedded store: prepare the next batch (decode, tokenize, compress) in a helper process
    # while the current one is written (see ingest/prepare_worker.py). Off: everything in the
    # processor, one batch at a time. OpenSearch needs no helper: the processor builds the next
    # batch's _bulk lines in its own thread while other threads wait for the engine.
    processor_prepare_worker: bool = True

    # --- alerting ---
    # Engine (see docs/alerting.md). The lease is how replicas agree on one evaluating engine;
    # 0 means "three intervals, at least 10 s".
    alert_interval_s: float = Field(30.0, gt=0, le=3600)
    alert_lease_s: float = Field(0.0, ge=0, le=3600)
    alert_workers: int = Field(8, ge=1, le=64)
    alert_base_url: str = ""  # prefix for links in notifications, e.g. https://logflow.example.com
    # Webhook/Slack targets: hosts or CIDRs (comma-separated) exempt from the private-address guard.
    webhook_allowed_hosts: str = ""
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    webhook_retries: int = Field(3, ge=0, le=10)
    webhook_ca_file: str = ""  # extra CA bundle for https webhook/Slack targets (system CAs otherwise)
    # E-mail: the server is configured here, never in a rule (a rule cannot aim SMTP anywhere).
    smtp_host: str = ""
    smtp_port: int = Field(0, ge=0, le=65535)  # 0: 465 with smtp_ssl, else 587 with STARTTLS, else 25
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")  # never shown in logs or reprs
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_from: str = "logflow@localhost"
    smtp_ca_file: str = ""  # extra CA bundle to verify the SMTP server's certificate
    smtp_timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, v: str) -> str:
        from logflow.alerting.ssrf import parse_allowlist

        parse_allowlist(v)  # raises ValueError naming the bad entry
        return v

    @field_validator("smtp_ssl")
    @classmethod
    def _smtp_tls(cls, v: bool, info: Any) -> bool:  # pydantic ValidationInfo
        if v and info.data.get("smtp_starttls"):
            raise ValueError("choose one of smtp_ssl (implicit TLS) and smtp_starttls, not both")
        return v

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return 465 if self.smtp_ssl else 587 if self.smtp_starttls else 25

    @property
    def effective_alert_lease_s(self) -> float:
        return self.alert_lease_s or max(3 * self.alert_interval_s, 10.0)
    # --- end alerting ---

    # Authentication (docs/security.md). The seed's plain SECRET_KEY/ALGORITHM/ACCESS_TOKEN_EXPIRE_MINUTES
    # names are accepted too, so its `.env` example works unchanged.
    secret_key: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("LOGFLOW_SECRET_KEY", "SECRET_KEY"))
    # HMAC algorithms only: the server pins one; asymmetric algorithms would need key pairs we don't manage.
    algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", validation_alias=AliasChoices("LOGFLOW_ALGORITHM", "ALGORITHM"))
    access_token_expire_minutes: int = Field(
        30, ge=1, le=24 * 60,
        validation_alias=AliasChoices("LOGFLOW_ACCESS_TOKEN_EXPIRE_MINUTES", "ACCESS_TOKEN_EXPIRE_MINUTES"))
    refresh_token_expire_days: int = Field(14, ge=1, le=365)
    jwt_issuer: str = "logflow"
    jwt_audience: str = "logflow-api"
    admin_password: SecretStr | None = None  # the first admin's password instead of the seed's default
    # None: the shape's default (true in development, false in production); see effective_* below.
    public_read: bool | None = None
    allow_registration: bool | None = None
    ingest_open: bool = False
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = True
    # Rate limits (fixed windows in the cache: per process with memory://, shared with redis://). 0 = off.
    rate_login_per_account: int = Field(10, ge=0)
    rate_login_per_address: int = Field(50, ge=0)
    rate_login_window_s: int = Field(300, ge=1)
    rate_api_per_minute: int = Field(3000, ge=0)
    rate_ingest_bytes_per_minute: int = Field(512 * 1024 * 1024, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, v: Any) -> Any:
        # "https://a.example, https://b.example" from the environment; a list from TOML.
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

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
    def effective_listen_host(self) -> str:
        return self.listen_host or self.host

    @model_validator(mode="after")
    def _syslog_tls(self) -> Settings:
        if self.syslog_tls_port and not (self.syslog_tls_cert and self.syslog_tls_key):
            raise ValueError("syslog_tls_port needs syslog_tls_cert and syslog_tls_key (PEM files)")
        return self

    @property
    def effective_public_read(self) -> bool:
        """Anonymous log/metric reads: the seed's behaviour in development, off in production."""
        return self.public_read if self.public_read is not None else self.env != "production"

    @property
    def effective_allow_registration(self) -> bool:
        """Self-registration: open in development (the seed's examples), admins create users in production."""
        if self.allow_registration is not None:
            return self.allow_registration
        return self.env != "production"

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


def _env_names(field: str) -> list[str]:
    """Environment variables that set ``field``: ``LOGFLOW_<FIELD>`` plus any seed alias."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"LOGFLOW_{field.upper()}"]


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
    for key in list(values):
        if key in Settings.model_fields and any(name in os.environ for name in _env_names(key)):
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
