"""Alert rule schema and validation: the seed's fields plus ``query``, ``group_by``, ``repeat_interval``.

Field-level problems (unknown condition, time_window out of range) come from pydantic;
channel-specific ones (webhook without ``url``, a bad e-mail address) from ``check_channel``.
Both end up as a 422 whose ``detail`` names the field (``notification_config.url: ...``) and
whose ``errors`` carry the location, like every other LogFlow validation error.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from logflow.domain.levels import ACCEPTED_LEVEL_NAMES, parse_level

CONDITIONS = ("greater_than", "less_than", "equals", "greater_than_or_equal", "less_than_or_equal")
CHANNELS = ("console", "webhook", "email", "slack")
GROUP_BY = ("service", "level")
Condition = Literal["greater_than", "less_than", "equals", "greater_than_or_equal", "less_than_or_equal"]
Channel = Literal["console", "webhook", "email", "slack"]
GroupBy = Literal["service", "level"]
REDACTED = "********"
SECRET_KEYS = ("secret",)
# Headers a rule may not set on its webhook: they are the transport's or the signature's.
_RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection",
                     "x-logflow-signature", "x-logflow-timestamp", "x-logflow-event", "x-logflow-delivery"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}$"
)


def compare(condition: str, value: float, threshold: float) -> bool:
    """Whether ``value`` (the count in the window) fires a rule with this condition and threshold."""
    if condition == "greater_than":
        return value > threshold
    if condition == "less_than":
        return value < threshold
    if condition == "equals":
        return value == threshold
    if condition == "greater_than_or_equal":
        return value >= threshold
    if condition == "less_than_or_equal":
        return value <= threshold
    raise ValueError(f"unknown condition {condition!r}")


class RuleInvalid(ValueError):
    """A rule failed validation; ``errors`` are pydantic-style ``{"loc", "msg", "type"}`` dicts."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        parts = []
        for err in self.errors:
            where = ".".join(str(p) for p in err["loc"] if p != "body")
            parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
        return "; ".join(parts)

    @classmethod
    def one(cls, loc: tuple[str | int, ...], msg: str) -> RuleInvalid:
        return cls([{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])

    @classmethod
    def from_pydantic(cls, exc: ValidationError, prefix: tuple[str, ...] = ()) -> RuleInvalid:
        return cls([{"loc": ["body", *prefix, *err["loc"]], "msg": err["msg"].removeprefix("Value error, "),
                     "type": err["type"]} for err in exc.errors()])


class RuleSpec(BaseModel):
    """A complete, valid rule as stored (``levels`` canonicalised to names such as ``ERROR``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    query: str | None = Field(None, max_length=4096, description='as in search: words and "phrases"')
    condition: Condition = "greater_than"
    threshold: float = Field(ge=0, le=1e12, allow_inf_nan=False)
    time_window: int = Field(5, ge=1, le=1440, description="minutes")
    levels: list[str] = Field(default_factory=list, max_length=6)
    services: list[str] = Field(default_factory=list, max_length=100)
    group_by: GroupBy | None = Field(None, description="one alert per service (or level)")
    repeat_interval: int | None = Field(None, ge=1, le=10080, description="minutes between reminders")
    notification_channel: Channel = "console"
    notification_config: dict[str, Any] = Field(default_factory=dict)
    is_active: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v or any(not ch.isprintable() for ch in v):
            raise ValueError("must be non-empty printable text on one line")
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for raw in v:
            level = parse_level(raw)
            if level is None:
                raise ValueError(f"unknown level {raw!r}; use {ACCEPTED_LEVEL_NAMES}")
            out.append(level.name)
        return list(dict.fromkeys(out))

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[str]) -> list[str]:
        out = [s.strip() for s in v]
        if any(not s or len(s) > 255 for s in out):
            raise ValueError("service names must be 1-255 characters")
        return list(dict.fromkeys(out))


class RuleUpdate(BaseModel):
    """PUT body: any subset of the rule's fields; the merged rule is validated as a whole."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    query: str | None = None
    condition: Condition | None = None
    threshold: float | None = None
    time_window: int | None = None
    levels: list[str] | None = None
    services: list[str] | None = None
    group_by: GroupBy | None = None
    repeat_interval: int | None = None
    notification_channel: Channel | None = None
    notification_config: dict[str, Any] | None = None
    is_active: bool | None = None


class _WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048)
    secret: str | None = Field(None, min_length=1, max_length=512)
    headers: dict[str, str] = Field(default_factory=dict, max_length=20)
    timeout: float | None = Field(None, gt=0, le=60)
    retries: int | None = Field(None, ge=0, le=10)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is not allowed")
            if any(ch in value for ch in "\r\n\0") or len(value) > 4096:
                raise ValueError(f"header {name!r} has an invalid value")
        return v


class _SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048)
    timeout: float | None = Field(None, gt=0, le=60)
    retries: int | None = Field(None, ge=0, le=10)


class _EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str] = Field(min_length=1, max_length=50)
    cc: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if not _EMAIL.match(address):
                raise ValueError(f"{address!r} is not a valid e-mail address")
        return v


class _ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


_CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "webhook": _WebhookConfig, "slack": _SlackConfig, "email": _EmailConfig, "console": _ConsoleConfig,
}


def check_channel(channel: str, config: dict[str, Any]) -> dict[str, Any]:
    """``notification_config`` normalised for ``channel``; RuleInvalid naming the bad key."""
    model = _CONFIG_MODELS[channel]
    try:
        parsed = model.model_validate(config)
    except ValidationError as exc:
        raise RuleInvalid.from_pydantic(exc, ("notification_config",)) from None
    return parsed.model_dump(exclude_none=True, exclude_unset=True)


def validate_rule(data: dict[str, Any]) -> RuleSpec:
    """The whole rule checked (fields and channel configuration); RuleInvalid otherwise."""
    try:
        spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        raise RuleInvalid.from_pydantic(exc) from None
    spec.notification_config = check_channel(spec.notification_channel, spec.notification_config)
    return spec


def redact_config(channel: str, config: dict[str, Any], *, full: bool) -> dict[str, Any]:
    """The config as shown to API readers: secrets never, a URL's path only to owner and admins."""
    shown = dict(config)
    for key in SECRET_KEYS:
        if shown.get(key):
            shown[key] = REDACTED
    if shown.get("headers"):
        shown["headers"] = {name: REDACTED for name in shown["headers"]}
    if not full and channel in ("webhook", "slack") and isinstance(shown.get("url"), str):
        # Slack and many webhook URLs carry their credential in the path.
        match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)", shown["url"])
        shown["url"] = f"{match.group(1) if match else ''}/{REDACTED}"
    return shown


def keep_redacted(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A client that PUTs back what GET showed keeps the stored secrets instead of "********"."""
    merged = dict(new)
    for key in SECRET_KEYS:
        if merged.get(key) == REDACTED:
            merged[key] = old.get(key)
    if isinstance(merged.get("headers"), dict):
        previous = old.get("headers") or {}
        merged["headers"] = {k: (previous.get(k, "") if v == REDACTED else v)
                             for k, v in merged["headers"].items()}
    if isinstance(merged.get("url"), str) and merged["url"].endswith(f"/{REDACTED}"):
        merged["url"] = old.get("url", merged["url"])
    return merged
