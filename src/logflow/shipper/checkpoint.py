"""The shipper's registry: per-file read offsets, written atomically only after LogFlow acknowledged.

One JSON file (``state.json`` in the state directory) lists every file generation the shipper
knows. A *generation* is one life of one file: a new inode, or the same inode after a
copytruncate, is a new generation with a fresh random ``key``. Event ids are ``key`` + byte offset,
so they are deterministic for a generation and can never collide with another generation's
(a content fingerprint alone would collide when a truncated file starts again with the same header).

``pending`` is the write-ahead part: before a batch is sent, the state records for each file the
byte range of the batch, the timestamp given to its events and the offsets where an event was cut
by the idle timeout. After a crash between LogFlow's 2xx and the checkpoint write, the shipper
rebuilds exactly the same events (same ids, same timestamps, same boundaries) and the store,
idempotent by id, treats the resend as a duplicate.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

STATE_VERSION = 1


@dataclass(slots=True)
class Pending:
    """Events of ``[start, end)`` that were (maybe) sent but not checkpointed: how to rebuild them exactly.

    The n-th event of the segment got timestamp ``ts_us + n`` (when the line had none of its own);
    ``cuts`` are offsets where the idle timeout closed an event.
    """

    start: int
    end: int
    ts_us: int
    cuts: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "ts_us": self.ts_us, "cuts": self.cuts}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Pending:
        return cls(start=int(doc["start"]), end=int(doc["end"]), ts_us=int(doc["ts_us"]),
                   cuts=[int(c) for c in doc.get("cuts", [])])


@dataclass(slots=True)
class FileState:
    """One file generation: identity, fingerprint and the acknowledged offset."""

    key: str
    dev: int
    ino: int
    path: str
    fingerprint: str = ""  # hex sha256 of the first ``fp_len`` bytes
    fp_len: int = 0
    offset: int = 0  # every byte before it is acknowledged by LogFlow (or was rejected for good)
    pending: list[Pending] = field(default_factory=list)
    done: bool = False  # rotated away and read to its end: kept only until the file disappears
    spool: str | None = None  # deleted before it was shipped: copy of its bytes from ``spool_base`` on
    spool_base: int = 0

    @staticmethod
    def new_key() -> str:
        return secrets.token_hex(8)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "key": self.key, "dev": self.dev, "ino": self.ino, "path": self.path,
            "fingerprint": self.fingerprint, "fp_len": self.fp_len, "offset": self.offset, "done": self.done,
        }
        if self.spool is not None:
            doc["spool"], doc["spool_base"] = self.spool, self.spool_base
        if self.pending:
            doc["pending"] = [p.to_json() for p in self.pending]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileState:
        pending = doc.get("pending") or []
        return cls(
            key=str(doc["key"]), dev=int(doc["dev"]), ino=int(doc["ino"]), path=str(doc["path"]),
            fingerprint=str(doc.get("fingerprint", "")), fp_len=int(doc.get("fp_len", 0)),
            offset=int(doc.get("offset", 0)), done=bool(doc.get("done", False)),
            pending=[Pending.from_json(p) for p in pending],
            spool=doc.get("spool"), spool_base=int(doc.get("spool_base", 0)),
        )


class StateStore:
    """Load and atomically save the registry (write a temporary file, fsync, rename, fsync the directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.writes = 0

    def load(self) -> dict[str, FileState]:
        """Every known generation by key; an absent file is an empty registry."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        doc = orjson.loads(raw)
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"{self.path}: unsupported state version {doc.get('version')!r}")
        states = [FileState.from_json(item) for item in doc.get("files", [])]
        return {state.key: state for state in states}

    def save(self, states: dict[str, FileState]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = orjson.dumps(
            {"version": STATE_VERSION, "files": [s.to_json() for s in states.values()]},
            option=orjson.OPT_INDENT_2,
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        # The rename itself must survive a power cut: fsync the directory entry.
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.writes += 1
