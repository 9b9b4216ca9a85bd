"""Multi-line joining and text parsing of the file shipper, on real Loghub lines."""

from __future__ import annotations

import re

import orjson

from logflow.shipper.multiline import Joiner, RawEvent
from logflow.shipper.parse import ParseOptions, detect_level, to_item
from logflow.shipper.tailer import ShipEvent
from tests.conftest import SHARED

HADOOP = (SHARED / "data" / "loghub" / "Hadoop" / "Hadoop_2k.log").read_text().splitlines()
TRACE = ["java.net.NoRouteToHostException: No route to host",
         "\tat sun.nio.ch.SocketChannelImpl.checkConnect(Native Method)",
         "\tat org.apache.hadoop.ipc.Client$Connection.setupConnection(Client.java:608)"]


def feed_all(joiner: Joiner, lines: list[str]) -> list[RawEvent]:
    out: list[RawEvent] = []
    pos = 0
    for text in lines:
        raw = (text + "\n").encode()
        out.extend(joiner.feed(raw, pos))
        pos += len(raw)
    tail = joiner.cut()
    return out + ([tail] if tail else [])


def test_start_pattern_joins_stack_traces_with_exact_offsets() -> None:
    lines = [HADOOP[0], HADOOP[1], *TRACE, HADOOP[2]]
    events = feed_all(Joiner(re.compile(r"^\d{4}-")), lines)
    assert [e.text for e in events] == [HADOOP[0], "\n".join([HADOOP[1], *TRACE]), HADOOP[2]]
    sizes = [len(line.encode()) + 1 for line in lines]
    assert [(e.start, e.end) for e in events] == [
        (0, sizes[0]), (sizes[0], sum(sizes[:5])), (sum(sizes[:5]), sum(sizes)),
    ]


def test_without_pattern_every_line_is_an_event_and_crlf_is_stripped() -> None:
    joiner = Joiner(None)
    events = joiner.feed(b"first line\r\n", 0) + joiner.feed(b"\tsecond\n", 12)
    assert [(e.text, e.start, e.end) for e in events] == [("first line", 0, 12), ("\tsecond", 12, 20)]
    assert joiner.open_start is None


def test_orphan_continuation_starts_an_event_and_size_caps_cut() -> None:
    joiner = Joiner(re.compile(r"^\S"), max_lines=3)
    events = feed_all(joiner, ["  orphan", "  still orphan", "head", " a", " b", " c", " d"])
    assert [e.text for e in events] == ["  orphan\n  still orphan", "head\n a\n b", " c\n d"]


def test_cut_marks_idle_and_keeps_invalid_utf8_replaced() -> None:
    joiner = Joiner(re.compile(r"^\S"))
    assert joiner.feed(b"caf\xe9 broken\n", 0) == []
    event = joiner.cut(idle=True)
    assert event is not None and event.idle_cut and event.text == "caf\ufffd broken"
    assert joiner.cut() is None


def test_level_detection_on_real_lines() -> None:
    hdfs = (SHARED / "data" / "loghub" / "HDFS" / "HDFS_2k.log").read_text().splitlines()
    assert detect_level(hdfs[0]) == "INFO"
    fatal = next(line for line in HADOOP if " FATAL " in line)
    assert detect_level(fatal) == "FATAL"
    assert detect_level('ts=1 level=warn msg="disk almost full"') == "WARN"
    assert detect_level("an error occurred while reading") is None
    assert detect_level("x" * 200 + " ERROR late") is None  # only the head of a line counts


def _event(text: str, start: int = 7) -> ShipEvent:
    return ShipEvent(key="k1", path="/var/log/app.log", raw=RawEvent(start, start + len(text) + 1, text))


def test_json_lines_keep_their_fields_and_text_gets_defaults() -> None:
    options = ParseOptions(service="svc", host="h1")
    line = orjson.dumps({"msg": "paid", "level": "warn", "ts": "2026-01-02T03:04:05Z", "order": 7,
                         "service": "billing", "id": "own-id"}).decode()
    item = to_item(_event(line), 123, options)
    assert item == {"msg": "paid", "level": "warn", "ts": "2026-01-02T03:04:05Z", "order": 7, "service": "billing",
                    "id": "own-id", "host": "h1", "log": {"file": {"path": "/var/log/app.log"}, "offset": 7}}
    no_message = to_item(_event('{"event": "login"}'), 123, options)
    assert no_message["message"] == '{"event": "login"}' and no_message["event"] == "login"
    assert no_message["id"] == "k1-7" and no_message["timestamp"] == 123
    text = to_item(_event(HADOOP[0]), 456, options)
    assert text == {"message": HADOOP[0], "level": "INFO", "id": "k1-7", "timestamp": 456, "service": "svc",
                    "host": "h1", "log": {"file": {"path": "/var/log/app.log"}, "offset": 7}}
    not_json = to_item(_event("{not json"), 1, ParseOptions(service="svc", detect_levels=False))
    assert not_json["message"] == "{not json" and "level" not in not_json
    assert to_item(_event('{"message": "x"}'), 1, ParseOptions(service="s", json_lines=False))["message"] == \
        '{"message": "x"}'
