"""A bounded on-disk copy of files that were deleted before they were fully shipped.

While the shipper runs, a deleted file stays readable through its open descriptor, so nothing is
lost however long LogFlow is down. The spool covers the remaining case: the shipper itself is
stopped or killed before such a file is shipped. Its unacknowledged bytes are copied into the state
directory (and the registry saved), so the next run ships them from the copy with the same event
ids. Bounded in total size: beyond the bound the file is not copied and a warning says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from logflow.shipper.checkpoint import FileState

log = logging.getLogger("logflow.shipper")
_CHUNK = 1 << 20


class Spool:
    """The spool directory: one ``<generation key>.spool`` file per deleted, unfinished file generation."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._refused: set[str] = set()

    def used(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return sum(entry.stat().st_size for entry in os.scandir(self.directory) if entry.is_file())
        return 0

    def save(self, state: FileState, fd: int, size: int) -> bool:
        """Copy what is not yet acknowledged (or not yet copied) of the deleted file open as ``fd``.

        ``size`` is the file's size; returns True when the registry entry changed (save the registry).
        """
        if state.spool is None:
            base = start = state.offset
            path = self.directory / f"{state.key}.spool"
        else:
            base, path = state.spool_base, Path(state.spool)
            start = base + path.stat().st_size
        if size <= start:
            return False
        if self.used() + (size - start) > self.max_bytes:
            if state.key not in self._refused:
                self._refused.add(state.key)
                log.warning("spool full (%d bytes): %s is deleted and not fully shipped; its rest is lost if the "
                            "shipper stops before LogFlow takes it", self.max_bytes, state.path)
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:
            position = start
            while position < size:
                chunk = os.pread(fd, min(_CHUNK, size - position), position)
                if not chunk:
                    break
                out.write(chunk)
                position += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        changed = state.spool is None
        state.spool, state.spool_base = str(path), base
        if changed:
            log.info("%s was deleted before it was shipped; copied its rest to %s", state.path, path)
        return changed

    @staticmethod
    def remove(state: FileState) -> None:
        if state.spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state.spool)
            state.spool = None
