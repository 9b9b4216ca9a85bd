"""Canonical log levels and the aliases shippers send for them."""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    """Canonical severity, ordered so that ``level >= Level.ERROR`` means "an error or worse"."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


ERROR_LEVELS: frozenset[Level] = frozenset({Level.ERROR, Level.CRITICAL})

# Lower-cased alias -> canonical level. Covers common logging libraries, syslog keywords and
# single-letter forms (glog, Android logcat).
_ALIASES: dict[str, Level] = {
    "trace": Level.TRACE,
    "finest": Level.TRACE,
    "finer": Level.TRACE,
    "verbose": Level.TRACE,
    "v": Level.TRACE,
    "debug": Level.DEBUG,
    "dbg": Level.DEBUG,
    "fine": Level.DEBUG,
    "d": Level.DEBUG,
    "info": Level.INFO,
    "information": Level.INFO,
    "informational": Level.INFO,
    "notice": Level.INFO,
    "i": Level.INFO,
    "config": Level.INFO,
    "warn": Level.WARN,
    "warning": Level.WARN,
    "w": Level.WARN,
    "error": Level.ERROR,
    "err": Level.ERROR,
    "e": Level.ERROR,
    "severe": Level.ERROR,
    "critical": Level.CRITICAL,
    "crit": Level.CRITICAL,
    "fatal": Level.CRITICAL,
    "panic": Level.CRITICAL,
    "emerg": Level.CRITICAL,
    "emergency": Level.CRITICAL,
    "alert": Level.CRITICAL,
    "f": Level.CRITICAL,
    "c": Level.CRITICAL,
}

# Syslog severities (RFC 5424 section 6.2.1): 0 emergency ... 7 debug.
_SYSLOG: tuple[Level, ...] = (
    Level.CRITICAL,
    Level.CRITICAL,
    Level.CRITICAL,
    Level.ERROR,
    Level.WARN,
    Level.INFO,
    Level.INFO,
    Level.DEBUG,
)

ACCEPTED_LEVEL_NAMES = (
    "TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL (any case), their usual aliases, or syslog severity 0-7"
)


# Every alias spelled lower, UPPER and Capitalized, as nearly all shippers send it: found with one
# lookup, before the strip and lower-casing (this runs once per ingested event).
_AS_SENT: dict[str, Level] = {
    spelling: level
    for alias, level in _ALIASES.items()
    for spelling in (alias, alias.upper(), alias.capitalize())
}


def parse_level(raw: object) -> Level | None:
    """Map a shipper's level (name, alias or syslog severity number) to a canonical level, or None."""
    if type(raw) is str:
        found = _AS_SENT.get(raw)
        if found is not None:
            return found
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return _SYSLOG[raw] if 0 <= raw <= 7 else None
    if isinstance(raw, str):
        text = raw.strip().lower()
        found = _ALIASES.get(text)
        if found is not None:
            return found
        if text.isdigit():
            return parse_level(int(text))
    return None
