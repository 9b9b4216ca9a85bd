"""The shipper's tailer and registry on real files: discovery, rotation, truncation, restart and replay."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from logflow.shipper.checkpoint import FileState, Pending, StateStore
from logflow.shipper.multiline import Joiner
from logflow.shipper.spool import Spool
from logflow.shipper.tailer import ShipEvent, Tailer
from tests.conftest import SHARED

HDFS = (SHARED / "data" / "loghub" / "HDFS" / "HDFS_2k.log").read_text().splitlines()


def make_tailer(pattern: Path | str, states: dict[str, FileState], *, start: str | None = None) -> Tailer:
    compiled = re.compile(start) if start else None
    return Tailer([str(pattern)], states, make_joiner=lambda: Joiner(compiled), rotated_grace_s=0.0)


def write(path: Path, lines: list[str], *, mode: str = "a") -> None:
    with path.open(mode) as fh:
        fh.write("".join(line + "\n" for line in lines))


def texts(events: list[ShipEvent]) -> list[str]:
    return [e.raw.text for e in events]


def ack(tailer: Tailer, events: list[ShipEvent]) -> None:
    """What the runner does after LogFlow's 2xx: move each generation's offset past its events."""
    for event in events:
        state = tailer.states.get(event.key)
        if state is not None:
            state.offset = max(state.offset, event.raw.end)


def test_reads_complete_lines_and_final_takes_the_unterminated_tail(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(HDFS[0] + "\n" + HDFS[1][:20])
    tailer = make_tailer(tmp_path / "*.log", {})
    tailer.scan()
    events = tailer.poll()
    assert texts(events) == [HDFS[0]]
    assert tailer.poll() == []  # the half-written line waits for its newline
    with log.open("a") as fh:
        fh.write(HDFS[1][20:] + "\n" + HDFS[2])
    assert texts(tailer.poll()) == [HDFS[1]]
    last = tailer.poll(final=True)
    assert texts(last) == [HDFS[2]] and last[0].raw.end == log.stat().st_size
    assert len({e.key for e in events + last}) == 1


def test_new_files_are_discovered_and_compressed_ones_excluded(tmp_path: Path) -> None:
    tailer = make_tailer(tmp_path / "*", {})
    tailer.scan()
    assert tailer.poll() == []
    write(tmp_path / "a.log", HDFS[:2])
    (tmp_path / "old.log.gz").write_bytes(b"\x1f\x8b not text")
    tailer.scan()
    assert texts(tailer.poll()) == HDFS[:2]
    assert [t.state.path for t in tailer.tracked.values()] == [str(tmp_path / "a.log")]


def test_rename_rotation_reads_old_file_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:3])
    tailer = make_tailer(log, {})
    tailer.scan()
    first = tailer.poll()
    write(log, HDFS[3:5])  # written before the rotation, not read yet
    os.rename(log, tmp_path / "app.log.1")
    write(tmp_path / "app.log.1", HDFS[5:6])  # the application writes once more before reopening
    write(log, HDFS[6:9], mode="w")
    tailer.scan()
    second = tailer.poll()
    assert texts(first + second) == HDFS[:9]
    old_key, new_key = first[0].key, second[-1].key
    assert old_key != new_key and {e.key for e in second} == {old_key, new_key}
    tailer.retire()
    assert len(tailer.tracked) == 2  # the rotated file is not acknowledged yet: kept open
    ack(tailer, first + second)
    tailer.retire()
    assert [t.state.key for t in tailer.tracked.values()] == [new_key]
    assert tailer.states[old_key].done  # still on disk as app.log.1: remembered, never re-read


def test_copytruncate_restarts_from_zero_with_a_new_generation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:4])
    tailer = make_tailer(log, {})
    tailer.scan()
    before = tailer.poll()
    shutil.copy(log, tmp_path / "app.log.1")
    with log.open("r+") as fh:
        fh.truncate(0)
    write(log, HDFS[4:5])
    after = tailer.poll()
    assert texts(after) == HDFS[4:5] and after[0].raw.start == 0
    assert after[0].key != before[0].key and before[0].key not in tailer.states


def test_truncated_and_rewritten_longer_is_caught_by_the_fingerprint(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:2])
    tailer = make_tailer(log, {})
    tailer.scan()
    before = tailer.poll()
    with log.open("r+") as fh:  # emptied and refilled past the old offset before the next poll
        fh.truncate(0)
    write(log, HDFS[10:20])
    after = tailer.poll()
    assert texts(after) == HDFS[10:20] and after[0].key != before[0].key


def test_restart_resumes_at_the_checkpoint_and_detects_inode_reuse(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:5])
    store = StateStore(tmp_path / "state")
    tailer = make_tailer(log, {})
    tailer.scan()
    events = tailer.poll()
    ack(tailer, events[:3])
    store.save(tailer.states)
    tailer.close()
    assert sorted(p.name for p in store.directory.iterdir()) == ["state.json"]  # no temporary left behind

    again = make_tailer(log, store.load())
    again.scan()
    assert texts(again.poll()) == HDFS[3:5]
    again.close()

    # Same (device, inode) but other content: another file that reuses the inode. Read it all.
    st = log.stat()
    states = store.load()
    (only,) = states.values()
    assert (only.dev, only.ino) == (st.st_dev, st.st_ino)
    write(log, HDFS[100:106], mode="w")
    reused = make_tailer(log, states)
    reused.scan()
    fresh = reused.poll()
    assert texts(fresh) == HDFS[100:106] and fresh[0].key != only.key and only.key not in states


def test_file_renamed_while_the_shipper_was_down_is_found_by_inode(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:4])
    tailer = make_tailer(log, {})
    tailer.scan()
    events = tailer.poll()
    ack(tailer, events[:2])
    states = tailer.states
    tailer.close()
    os.rename(log, tmp_path / "app.log.1")
    write(log, HDFS[50:52], mode="w")
    restarted = make_tailer(log, states)
    restarted.scan()
    assert sorted(texts(restarted.poll())) == sorted(HDFS[2:4] + HDFS[50:52])


def test_replay_rebuilds_pending_events_with_the_same_boundaries_and_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    head = "2015-10-18 18:05:57,009 WARN [main] DFSClient: DataStreamer Exception"
    write(log, [head, "java.io.IOException: Broken pipe", "\tat sun.nio.ch.FileDispatcherImpl.write0(Native)"])
    tailer = make_tailer(log, {}, start=r"^\d{4}-")
    tailer.scan()
    assert tailer.poll(idle_timeout_s=3600) == []  # still open: a continuation may follow
    (sent,) = tailer.poll(idle_timeout_s=0)
    assert sent.raw.idle_cut
    (state,) = tailer.states.values()
    state.pending = [Pending(start=0, end=sent.raw.end, ts_us=1_000, cuts=[sent.raw.end])]
    states = {state.key: FileState.from_json(state.to_json())}
    tailer.close()
    write(log, ["\tat org.apache.hadoop.hdfs.DFSOutputStream.run(DFSOutputStream.java:1)", head])
    replayed = make_tailer(log, states, start=r"^\d{4}-")
    replayed.scan()
    events = replayed.poll(final=True)
    assert events[0].raw.text == sent.raw.text and events[0].key == sent.key
    assert (events[0].raw.start, events[0].raw.end, events[0].fixed_ts) == (0, sent.raw.end, 1_000)
    assert [e.fixed_ts for e in events[1:]] == [None, None]
    assert texts(events[1:]) == ["\tat org.apache.hadoop.hdfs.DFSOutputStream.run(DFSOutputStream.java:1)", head]


def test_state_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load() == {}
    state = FileState(key="ab", dev=1, ino=2, path="/x", fingerprint="ff", fp_len=3, offset=9,
                      pending=[Pending(start=0, end=9, ts_us=5, cuts=[4])])
    store.save({"ab": state})
    assert store.load() == {"ab": state}


def test_deleted_before_shipped_is_spooled_and_shipped_from_the_copy_after_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:6])
    spool = Spool(tmp_path / "state" / "spool", max_bytes=1 << 20)
    tailer = Tailer([str(log)], {}, make_joiner=lambda: Joiner(None), rotated_grace_s=0.0, spool=spool)
    tailer.scan()
    events = tailer.poll()
    ack(tailer, events[:2])  # LogFlow took two lines, then went away
    os.rename(log, tmp_path / "app.log.1")
    write(tmp_path / "app.log.1", HDFS[6:8])
    os.remove(tmp_path / "app.log.1")
    tailer.scan()
    assert tailer.needs_save
    (state,) = tailer.states.values()
    assert state.spool is not None and state.spool_base == events[2].raw.start
    assert Path(state.spool).read_text() == "".join(line + "\n" for line in HDFS[2:8])
    states = {state.key: FileState.from_json(state.to_json())}  # what the registry file holds
    tailer.close()  # the shipper stops (or is killed) before LogFlow is back

    restarted = Tailer([str(log)], states, make_joiner=lambda: Joiner(None), rotated_grace_s=0.0, spool=spool)
    restarted.scan()
    rest = restarted.poll()
    assert texts(rest) == HDFS[2:8] and {e.key for e in rest} == {state.key}
    assert [(e.raw.start, e.raw.end) for e in rest[:4]] == [(e.raw.start, e.raw.end) for e in events[2:6]]
    ack(restarted, rest)
    restarted.retire()
    assert restarted.tracked == {} and restarted.states == {} and spool.used() == 0


def test_spool_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, HDFS[:50])
    spool = Spool(tmp_path / "spool", max_bytes=100)
    tailer = Tailer([str(log)], {}, make_joiner=lambda: Joiner(None), spool=spool)
    tailer.scan()
    os.remove(log)
    tailer.scan()
    (state,) = tailer.states.values()
    assert state.spool is None and not tailer.needs_save and spool.used() == 0
    assert texts(tailer.poll()) == HDFS[:50]  # still read through the open descriptor
