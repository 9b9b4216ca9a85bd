"""Committed-offset files of the embedded queue's consumer groups (and of dead-letter replays).

One small file per group: the offset as 8 little-endian bytes and their CRC32, replaced
atomically, so a crash leaves either the old or the new offset, never half of one.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

from logflow.backends.queue.segments import SegmentCorrupted, fsync_dir

_OFFSET = struct.Struct("<QI")  # committed offset + CRC32 of it
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_group(group: str) -> None:
    """ValueError unless ``group`` can name a group's files."""
    if not _GROUP.fullmatch(group):
        raise ValueError(f"invalid consumer group {group!r}: use letters, digits, '.', '_' or '-'")


def read_offset(path: Path) -> int | None:
    """The offset committed in ``path``, None if the group never committed."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) != _OFFSET.size or zlib.crc32(raw[:8]) != _OFFSET.unpack(raw)[1]:
        raise SegmentCorrupted(f"committed offset file {path} is corrupt")
    offset: int = _OFFSET.unpack(raw)[0]
    return offset


def write_offset(path: Path, offset: int) -> None:
    """Replace the offset file atomically and durably (temp file, fsync, rename, dir fsync)."""
    raw = offset.to_bytes(8, "little")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, raw + zlib.crc32(raw).to_bytes(4, "little"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def committed_offsets(offsets_dir: Path) -> list[int]:
    """Every group's committed offset under ``offsets_dir``."""
    found = []
    for name in os.listdir(offsets_dir):
        if name.endswith(".offset"):
            value = read_offset(offsets_dir / name)
            if value is not None:
                found.append(value)
    return found
