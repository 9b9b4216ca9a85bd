"""Parsing and validation of query parameters shared by the routes (durations, times, intervals)."""

from __future__ import annotations

import re
import time

from fastapi import HTTPException

from logflow.domain.levels import Level, parse_level
from logflow.ingest.timestamps import TimestampError, parse_timestamp

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
INTERVALS = ("1m", "5m", "10m", "15m", "30m", "1h", "3h", "6h", "12h", "1d")
MAX_BUCKETS = 5000


def parse_duration(value: str, *, name: str, max_s: int) -> int:
    """``15m`` → 900. 422 with the accepted form for anything else."""
    match = _DURATION.match(value)
    if not match or int(match.group(1)) == 0:
        raise HTTPException(422, f"{name}: expected a duration such as 15m, 1h, 24h or 7d, got {value!r}")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > max_s:
        raise HTTPException(422, f"{name}: {value} is longer than the {max_s // 86400}-day retention window")
    return seconds


def parse_interval(value: str) -> int:
    if value not in INTERVALS:
        raise HTTPException(422, f"interval: must be one of {', '.join(INTERVALS)}, got {value!r}")
    return parse_duration(value, name="interval", max_s=86400)


def parse_time(value: str | None, *, name: str) -> int | None:
    """ISO 8601 or epoch seconds/ms/µs/ns → µs; None stays None."""
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (TimestampError, OverflowError, ValueError) as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


def time_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    start_us = parse_time(start, name="start_time")
    end_us = parse_time(end, name="end_time")
    if start_us is not None and end_us is not None and start_us >= end_us:
        raise HTTPException(422, "start_time must be before end_time")
    return start_us, end_us


def parse_levels(values: list[str] | None) -> tuple[Level, ...]:
    levels: list[Level] = []
    for raw in split_multi(values):
        level = parse_level(raw)
        if level is None:
            names = ", ".join(lv.name for lv in Level)
            raise HTTPException(422, f"level: unknown level {raw!r}; use one of {names}")
        levels.append(level)
    return tuple(dict.fromkeys(levels))


def split_multi(values: list[str] | None) -> list[str]:
    """``?service=a&service=b`` and ``?service=a,b`` both give ``[a, b]``."""
    out: list[str] = []
    for value in values or []:
        out += [part.strip() for part in value.split(",") if part.strip()]
    return out


def now_us() -> int:
    return time.time_ns() // 1000
