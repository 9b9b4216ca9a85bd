"""Join physical lines into log events: a line matching the start pattern begins an event, others continue it.

Without a pattern every line is one event. Boundaries depend only on the bytes, on the size caps and
on explicit cuts (the idle timeout, or a replayed batch boundary), so re-reading a file after a
restart rebuilds the same events at the same offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_MAX_LINES = 1000
DEFAULT_MAX_BYTES = 200 * 1024  # below LogFlow's default 256 KiB per event, leaving room for the fields


@dataclass(slots=True)
class RawEvent:
    """One event's text and where it lies in its file: ``[start, end)`` in bytes."""

    start: int
    end: int
    text: str
    idle_cut: bool = False  # closed by the idle timeout (recorded so a replay cuts at the same place)


@dataclass(slots=True)
class _Open:
    start: int
    end: int
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


def _decode(line: bytes) -> str:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", errors="replace")


class Joiner:
    """Multi-line state of one file generation."""

    def __init__(self, start_pattern: re.Pattern[str] | None = None, *, max_lines: int = DEFAULT_MAX_LINES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.pattern = start_pattern
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._open: _Open | None = None

    @property
    def open_start(self) -> int | None:
        """Offset of the event still being joined, or None."""
        return None if self._open is None else self._open.start

    def feed(self, line: bytes, start: int) -> list[RawEvent]:
        """Add one physical line (with its newline, if any) read at ``start``; returns the events it completed."""
        end = start + len(line)
        if self.pattern is None:
            return [RawEvent(start, end, _decode(line))]
        done: list[RawEvent] = []
        current = self._open
        starts_event = current is None or bool(self.pattern.search(_decode(line)))
        if current is not None and (
            starts_event or len(current.lines) >= self.max_lines or current.size + len(line) > self.max_bytes
        ):
            done.append(self._close(idle=False))
            current = None
        if current is None:
            current = self._open = _Open(start=start, end=start)
        current.lines.append(line)
        current.size += len(line)
        current.end = end
        return done

    def cut(self, *, idle: bool = False) -> RawEvent | None:
        """Close the open event now (idle timeout, end of input, or a replayed boundary)."""
        if self._open is None:
            return None
        return self._close(idle=idle)

    def _close(self, *, idle: bool) -> RawEvent:
        current = self._open
        assert current is not None
        self._open = None
        text = "\n".join(_decode(line) for line in current.lines)
        return RawEvent(current.start, current.end, text, idle_cut=idle)
