"""Find files by glob and follow them: new files, rename rotation, copytruncate, inode reuse.

A file is identified by ``(device, inode)`` plus a fingerprint (sha256 of its first bytes, up to
1 KiB) so that a deleted file whose inode is reused by a new file is recognised as new. The tailer
keeps every followed file open: a file renamed away (rotation) or deleted is still read to its end
through the open descriptor, and is closed only once everything read from it is acknowledged.
Only complete lines are read (a line without its newline waits) except at the end of ``--once`` or
of a drained rotated file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from logflow.shipper.checkpoint import FileState, Pending
from logflow.shipper.multiline import Joiner, RawEvent
from logflow.shipper.spool import Spool

log = logging.getLogger("logflow.shipper")

FP_MAX = 1024
READ_CHUNK = 1 << 20
DEFAULT_EXCLUDES = ("*.gz", "*.bz2", "*.xz", "*.zst", "*.zip")
_PRUNE_EVERY_S = 30.0


@dataclass(slots=True)
class ShipEvent:
    """A joined event of one file generation; ``fixed_ts`` is set when it replays a pending batch."""

    key: str
    path: str
    raw: RawEvent
    fixed_ts: int | None = None


def _fingerprint(fd: int, length: int) -> str:
    return hashlib.sha256(os.pread(fd, length, 0)).hexdigest()


@dataclass(slots=True)
class Tracked:
    """A followed, open file generation and its read position (ahead of the acknowledged offset)."""

    state: FileState
    fd: int
    joiner: Joiner
    read_pos: int
    size: int = 0
    rotated: bool = False  # no glob reaches it any more (renamed away or deleted): drain, then close
    last_data: float = field(default_factory=time.monotonic)
    eof_since: float | None = None
    replay: list[Pending] = field(default_factory=list)
    boundaries: set[int] = field(default_factory=set)
    ordinal: int = 0
    base: int = 0  # reading a spool copy: its byte 0 is the file's byte ``base``
    from_spool: bool = False

    @property
    def drained(self) -> bool:
        return self.read_pos >= self.size and self.joiner.open_start is None


class Tailer:
    """Discovers and reads files; ``states`` is the registry shared with the runner (key -> FileState)."""

    def __init__(self, patterns: Sequence[str], states: dict[str, FileState], *,
                 make_joiner: Callable[[], Joiner], excludes: Sequence[str] = DEFAULT_EXCLUDES,
                 rotated_grace_s: float = 10.0, spool: Spool | None = None) -> None:
        self.patterns = [os.path.abspath(os.path.expanduser(p)) for p in patterns]
        self.excludes = list(excludes)
        self.states = states
        self.make_joiner = make_joiner
        self.rotated_grace_s = rotated_grace_s
        self.tracked: dict[tuple[int, int], Tracked] = {}
        self.spool = spool
        self.needs_save = False  # the registry changed outside a batch (a spool copy): the runner saves it
        self._recovered = False
        self._last_prune = 0.0

    # -- discovery ----------------------------------------------------------------------------
    def _paths(self) -> Iterator[str]:
        seen: set[str] = set()
        for pattern in self.patterns:
            matches = glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]
            for path in sorted(matches):
                name = os.path.basename(path)
                if path in seen or any(fnmatch.fnmatch(name, ex) for ex in self.excludes):
                    continue
                seen.add(path)
                yield path

    def scan(self) -> None:
        """Pick up new files, notice files that left the globs (rotation), recover rotated files after a restart."""
        seen: set[tuple[int, int]] = set()
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            ident = (st.st_dev, st.st_ino)
            seen.add(ident)
            tracked = self.tracked.get(ident)
            if tracked is None:
                self._open(path, st)
            else:
                tracked.state.path = path
                tracked.rotated = False
        for ident, tracked in self.tracked.items():
            if ident not in seen and not tracked.rotated:
                tracked.rotated = True
                tracked.eof_since = None
                log.info("%s rotated away or deleted; reading it to its end", tracked.state.path)
            if tracked.rotated and not tracked.from_spool and self.spool is not None:
                st = os.fstat(tracked.fd)
                if st.st_nlink == 0 and st.st_size > tracked.state.offset:
                    self.needs_save |= self.spool.save(tracked.state, tracked.fd, st.st_size)
        if not self._recovered:
            self._recovered = True
            self._recover_rotated()
        now = time.monotonic()
        if now - self._last_prune >= _PRUNE_EVERY_S:
            self._last_prune = now
            self._prune_done()

    def _open(self, path: str, st: os.stat_result, *, rotated: bool = False) -> Tracked | None:
        """Follow a file: resume its registry entry when identity and fingerprint match, else a new generation.

        ``rotated`` (recovery after a restart) only resumes a known generation, never starts a new one.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc)
            return None
        ident = (st.st_dev, st.st_ino)
        known = [s for s in self.states.values() if (s.dev, s.ino) == ident]
        state: FileState | None = None
        for candidate in known:
            same = (st.st_size >= candidate.offset and st.st_size >= candidate.fp_len
                    and _fingerprint(fd, candidate.fp_len) == candidate.fingerprint)
            if same and state is None:
                state = candidate
            else:  # an older life of this inode (deleted and reused, or truncated while we were away)
                del self.states[candidate.key]
        if state is None and rotated:
            os.close(fd)
            return None
        if state is None:
            state = FileState(key=FileState.new_key(), dev=st.st_dev, ino=st.st_ino, path=path)
            self.states[state.key] = state
            log.info("following %s from the beginning", path)
        elif state.offset:
            log.info("following %s from offset %d", path, state.offset)
        state.path = path
        state.done = False
        tracked = Tracked(state=state, fd=fd, joiner=self.make_joiner(), read_pos=state.offset,
                          rotated=rotated, replay=[p for p in state.pending if p.end > state.offset])
        tracked.boundaries = {o for p in tracked.replay for o in (p.start, p.end, *p.cuts)}
        self.tracked[ident] = tracked
        return tracked

    def _recover_rotated(self) -> None:
        """After a restart: files in the registry that no glob reaches any more (renamed while we were
        down) are looked up by inode in their old directory and read to their end."""
        followed = {(t.state.dev, t.state.ino) for t in self.tracked.values()}
        for state in list(self.states.values()):
            if state.done or (state.dev, state.ino) in followed:
                continue
            if state.spool is not None and self._open_spool(state):
                continue
            found = self._find_by_inode(state)
            if found is None:
                log.warning("%s is gone; whatever of it after offset %d was not shipped is lost",
                            state.path, state.offset)
                del self.states[state.key]
                continue
            if self._open(found[0], found[1], rotated=True) is None:
                log.warning("%s was replaced; whatever of it after offset %d was not shipped is lost",
                            state.path, state.offset)

    def _open_spool(self, state: FileState) -> bool:
        try:
            fd = os.open(state.spool or "", os.O_RDONLY)
        except OSError as exc:
            log.warning("spool copy of %s is unreadable (%s)", state.path, exc)
            return False
        st = os.fstat(fd)
        tracked = Tracked(state=state, fd=fd, joiner=self.make_joiner(), read_pos=state.offset, rotated=True,
                          replay=[p for p in state.pending if p.end > state.offset], base=state.spool_base,
                          from_spool=True)
        tracked.boundaries = {o for p in tracked.replay for o in (p.start, p.end, *p.cuts)}
        self.tracked[(st.st_dev, st.st_ino)] = tracked
        log.info("shipping the rest of deleted %s from its spool copy", state.path)
        return True

    @staticmethod
    def _find_by_inode(state: FileState) -> tuple[str, os.stat_result] | None:
        directory = os.path.dirname(state.path) or "."
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) == (state.dev, state.ino) and stat.S_ISREG(st.st_mode):
                        return entry.path, st
        return None

    def _prune_done(self) -> None:
        for state in [s for s in self.states.values() if s.done]:
            if self._find_by_inode(state) is None:
                del self.states[state.key]

    # -- reading ------------------------------------------------------------------------------
    def poll(self, *, final: bool = False, idle_timeout_s: float = 1.0) -> list[ShipEvent]:
        """Read what is new in every followed file; ``final`` also takes unterminated last lines."""
        out: list[ShipEvent] = []
        now = time.monotonic()
        for tracked in list(self.tracked.values()):
            out.extend(self._read(tracked, final=final))
            finishing = final or (tracked.rotated and tracked.eof_since is not None
                                  and now - tracked.eof_since >= self.rotated_grace_s)
            if tracked.joiner.open_start is not None and (
                finishing or now - tracked.last_data >= idle_timeout_s
            ):
                raw = tracked.joiner.cut(idle=True)
                if raw is not None:
                    out.append(self._emit(tracked, raw))
        return out

    def _read(self, t: Tracked, *, final: bool) -> list[ShipEvent]:
        out: list[ShipEvent] = []
        size = t.base + os.fstat(t.fd).st_size
        if not t.from_spool and (size < t.read_pos or (size != t.size and self._replaced(t, size))):
            out.extend(self._truncated(t))
        t.size = size
        finishing = final or (t.rotated and t.eof_since is not None
                              and time.monotonic() - t.eof_since >= self.rotated_grace_s)
        budget = 4 * READ_CHUNK  # per poll, so one huge file does not starve the others
        while t.read_pos < t.size and budget > 0:
            chunk = os.pread(t.fd, min(READ_CHUNK, t.size - t.read_pos), t.read_pos - t.base)
            if not chunk:
                break
            budget -= len(chunk)
            at_end = t.read_pos + len(chunk) >= t.size
            cut = chunk.rfind(b"\n") + 1
            if (finishing and at_end) or (len(chunk) >= READ_CHUNK and cut == 0):
                cut = len(chunk)  # the last line without newline, or one line longer than a read
            if cut == 0:
                break
            pos = t.read_pos
            pieces = chunk[:cut].split(b"\n")
            for i, piece in enumerate(pieces):
                line = piece if i == len(pieces) - 1 else piece + b"\n"
                if line:
                    out.extend(self._feed(t, line, pos))
                    pos += len(line)
            t.read_pos += cut
            t.last_data = time.monotonic()
        if t.read_pos >= t.size:
            t.eof_since = t.eof_since or time.monotonic()
        else:
            t.eof_since = None
        state = t.state
        if not t.from_spool and state.fp_len < FP_MAX and t.read_pos > state.fp_len:
            state.fp_len = min(t.read_pos, FP_MAX)
            state.fingerprint = _fingerprint(t.fd, state.fp_len)
        return out

    @staticmethod
    def _replaced(t: Tracked, size: int) -> bool:
        state = t.state
        return state.fp_len > 0 and size >= state.fp_len and _fingerprint(t.fd, state.fp_len) != state.fingerprint

    def _truncated(self, t: Tracked) -> list[ShipEvent]:
        """copytruncate (or rewritten in place): finish the old generation, start a new one at offset 0."""
        out: list[ShipEvent] = []
        raw = t.joiner.cut(idle=True)
        if raw is not None:
            out.append(self._emit(t, raw))
        log.info("%s was truncated; reading it again from the start", t.state.path)
        # The old generation's bytes are gone from the file: nothing can be re-read, so its entry goes.
        self.states.pop(t.state.key, None)
        t.state = FileState(key=FileState.new_key(), dev=t.state.dev, ino=t.state.ino, path=t.state.path)
        self.states[t.state.key] = t.state
        t.read_pos = t.size = 0
        t.replay, t.boundaries, t.ordinal = [], set(), 0
        t.joiner = self.make_joiner()
        return out

    def _feed(self, t: Tracked, line: bytes, start: int) -> list[ShipEvent]:
        out: list[ShipEvent] = []
        if start in t.boundaries:  # replaying a pending batch: cut exactly where it was cut before
            raw = t.joiner.cut()
            if raw is not None:
                out.append(self._emit(t, raw))
        out.extend(self._emit(t, raw) for raw in t.joiner.feed(line, start))
        return out

    def _emit(self, t: Tracked, raw: RawEvent) -> ShipEvent:
        event = ShipEvent(key=t.state.key, path=t.state.path, raw=raw)
        while t.replay and raw.start >= t.replay[0].end:
            t.replay.pop(0)
            t.ordinal = 0
        if t.replay and raw.start >= t.replay[0].start:
            event.fixed_ts = t.replay[0].ts_us + t.ordinal
            t.ordinal += 1
        return event

    # -- closing ------------------------------------------------------------------------------
    def retire(self, *, final: bool = False) -> None:
        """Close rotated files that are read to their end and fully acknowledged."""
        now = time.monotonic()
        for ident, t in list(self.tracked.items()):
            if not t.rotated or not t.drained or t.state.offset < t.read_pos:
                continue
            if not final and (t.eof_since is None or now - t.eof_since < self.rotated_grace_s):
                continue
            deleted = t.from_spool or os.fstat(t.fd).st_nlink == 0
            os.close(t.fd)
            del self.tracked[ident]
            if t.state.spool is not None:
                Spool.remove(t.state)
            if deleted:
                self.states.pop(t.state.key, None)
            else:
                t.state.done = True
            log.info("finished rotated file %s", t.state.path)

    def backlog_bytes(self) -> int:
        """Bytes in followed files not read yet (for the progress bar)."""
        return sum(max(0, t.size - t.read_pos) for t in self.tracked.values())

    def total_bytes(self) -> int:
        return sum(t.size for t in self.tracked.values())

    def close(self) -> None:
        for t in self.tracked.values():
            with contextlib.suppress(OSError):
                os.close(t.fd)
        self.tracked.clear()


def compile_start(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None
