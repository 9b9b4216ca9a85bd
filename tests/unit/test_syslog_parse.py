"""Syslog parsing and TCP framing: the RFC examples, real Loghub lines, escapes, every framing edge."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from logflow.domain.levels import Level
from logflow.ingest.decode import INVALID_UTF8_FLAG
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import normalize
from logflow.ingest.protocols.syslog import (
    TRUNCATED_FLAG,
    UNPARSED_FLAG,
    Frame,
    SyslogFramer,
    parse_structured_data,
    parse_syslog,
    syslog_item,
)
from tests.conftest import SHARED, loghub_rows

BOM = "\ufeff"


def local_iso(*fields: int) -> str:
    """A wall-clock time of this machine's zone as the parser reports it (UTC, ``Z``)."""
    epoch = time.mktime((*fields, 0, 0, -1))  # type: ignore[arg-type]
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


# -- RFC 5424 §6.5 examples --------------------------------------------------------------------------


def test_rfc5424_example_1_bom_and_nil_procid() -> None:
    line = (f"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - {BOM}'su root' failed for lonvick"
            " on /dev/pts/8")
    assert parse_syslog(line) == {
        "timestamp": "2003-10-11T22:14:15.003000Z", "host": "mymachine.example.com", "service": "su",
        "msgid": "ID47", "message": "'su root' failed for lonvick on /dev/pts/8", "level": 2, "facility": "auth",
    }


def test_rfc5424_example_2_microseconds_and_offset() -> None:
    line = "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."
    assert parse_syslog(line) == {
        "timestamp": "2003-08-24T12:14:15.000003Z", "host": "192.0.2.1", "service": "myproc", "procid": "8710",
        "message": "%% It's time to make the do-nuts.", "level": 5, "facility": "local4",
    }


def test_rfc5424_examples_3_and_4_structured_data() -> None:
    sd = '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    head = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47"
    three = f"{head} {sd} {BOM}An application event log entry..."
    parsed = parse_syslog(three)
    assert parsed is not None
    assert parsed["message"] == "An application event log entry..."
    assert {k: v for k, v in parsed.items() if k.startswith("sd.")} == {
        "sd.exampleSDID@32473.iut": "3", "sd.exampleSDID@32473.eventSource": "Application",
        "sd.exampleSDID@32473.eventID": "1011",
    }
    four = f'{head} {sd}[examplePriority@32473 class="high"]'
    parsed = parse_syslog(four)
    assert parsed is not None
    assert parsed["message"] == ""
    assert parsed["sd.examplePriority@32473.class"] == "high" and parsed["sd.exampleSDID@32473.iut"] == "3"


def test_structured_data_escapes_repeats_and_empty_elements() -> None:
    text = r'[a@1 p="q\"uo\]te\\d" p="two" raw="back\slash"][timeQuality] rest'
    attributes, end = parse_structured_data(text, 0)  # type: ignore[misc]
    assert attributes == {"sd.a@1.p": ['q"uo]te\\d', "two"], "sd.a@1.raw": "back\\slash", "sd.timeQuality": True}
    assert text[end:] == " rest"
    for broken in ('[a@1 p="unterminated]', "[a@1 p=noquotes]", "[a@1", "[ a]", "x"):
        assert parse_structured_data(broken, 0) is None, broken


def test_all_nil_header_and_fraction_beyond_microseconds() -> None:
    assert parse_syslog("<14>1 - - - - - - hello") == {"message": "hello", "level": 6, "facility": "user"}
    parsed = parse_syslog("<14>1 2026-01-02T03:04:05.123456789+01:00 h a p m - x")
    assert parsed is not None and parsed["timestamp"] == "2026-01-02T02:04:05.123456Z"


@pytest.mark.parametrize("line", [
    "<14>1 2026-13-40T00:00:00Z host app - - - impossible date",  # structurally right, not a date
    '<14>1 2026-01-02T03:04:05Z host app - - [bad sd no close',
    "<14>1 2026-01-02T03:04:05Z host app - -",  # header cut short
])
def test_broken_rfc5424_header_keeps_everything_as_the_message(line: str) -> None:
    parsed = parse_syslog(line)
    assert parsed is not None
    assert parsed["message"] == line[4:] and parsed["level"] == 6 and "host" not in parsed


# -- RFC 3164 §5.4 examples and the forms real senders use ----------------------------------------------

NOW = time.mktime((2026, 11, 28, 12, 0, 0, 0, 0, -1))


def test_rfc3164_example_1() -> None:
    parsed = parse_syslog("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", now=NOW)
    assert parsed == {
        "timestamp": local_iso(2026, 10, 11, 22, 14, 15), "host": "mymachine", "service": "su",
        "message": "'su root' failed for lonvick on /dev/pts/8", "level": 2, "facility": "auth",
    }


def test_rfc3164_example_2_without_pri_is_unparsed_but_stored() -> None:
    assert parse_syslog("Use the BFG!") is None
    item = syslog_item(Frame(b"Use the BFG!\n", peer="10.0.0.99"))
    assert item is not None
    assert item.value == {"message": "Use the BFG!", "host": "10.0.0.99"} and item.flags == [UNPARSED_FLAG]
    relayed = parse_syslog("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", now=NOW)
    assert relayed == {"timestamp": local_iso(2026, 2, 5, 17, 32, 18), "host": "10.0.0.99",
                       "message": "Use the BFG!", "level": 5, "facility": "user"}


def test_rfc3164_examples_3_and_4() -> None:
    three = ("<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  "
             "Ingredients: Mix=OK, Jelly=OK # Devices: Mixer=OK, Jelly_Injector=OK, Frier=OK # Transport: "
             "Conveyer1=OK, Conveyer2=OK # %%")
    parsed = parse_syslog(three, now=NOW)
    assert parsed is not None
    # As the RFC explains: the relay sees "CST" as the HOSTNAME and the rest as the message.
    assert parsed["host"] == "CST" and parsed["message"].startswith("1987 mymachine myproc[10]: %%")
    four = "<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"
    assert parse_syslog(four, now=NOW) == {"message": four[3:], "level": 0, "facility": "kern"}


def test_local_sysloghandler_forms_without_timestamp_or_host() -> None:
    assert parse_syslog("<11>myapp[42]: disk full", now=NOW) == {
        "service": "myapp", "procid": "42", "message": "disk full", "level": 3, "facility": "user"}
    assert parse_syslog("<14>plain text with no tag", now=NOW) == {
        "message": "plain text with no tag", "level": 6, "facility": "user"}
    # /dev/log style: a timestamp, then the tag directly (no hostname)
    parsed = parse_syslog("<38>Nov 28 11:00:00 sshd[7]: Accepted publickey", now=NOW)
    assert parsed is not None and "host" not in parsed and parsed["service"] == "sshd"


def test_rsyslog_forward_format_rfc3339_in_a_bsd_header() -> None:
    parsed = parse_syslog("<86>2026-11-28T10:00:00.123456+00:00 web1 CRON[99]: job done", now=NOW)
    assert parsed == {"timestamp": "2026-11-28T10:00:00.123456Z", "host": "web1", "service": "CRON",
                      "procid": "99", "message": "job done", "level": 6, "facility": "authpriv"}


def test_bsd_year_rolls_back_when_it_would_be_more_than_a_day_ahead() -> None:
    new_year = time.mktime((2027, 1, 1, 0, 30, 0, 0, 0, -1))
    assert parse_syslog("<14>Dec 31 23:59:00 h t: m", now=new_year)["timestamp"] == local_iso(2026, 12, 31, 23, 59, 0)  # type: ignore[index]
    assert parse_syslog("<14>Jan  1 09:00:00 h t: m", now=new_year)["timestamp"] == local_iso(2027, 1, 1, 9, 0, 0)  # type: ignore[index]
    assert parse_syslog("<14>Jan  3 09:00:00 h t: m", now=new_year)["timestamp"] == local_iso(2026, 1, 3, 9, 0, 0)  # type: ignore[index]
    # Feb 29 exists in neither 2027 nor 2026: no timestamp, the text stays in the message
    leap = parse_syslog("<14>Feb 29 10:00:00 h t: m", now=new_year)
    assert leap is not None and "timestamp" not in leap and leap["message"].startswith("Feb 29")


def test_severity_to_level_and_facility_names() -> None:
    limits = IngestLimits()
    expected = [Level.CRITICAL] * 3 + [Level.ERROR, Level.WARN, Level.INFO, Level.INFO, Level.DEBUG]
    for severity, level in enumerate(expected):
        fields = parse_syslog(f"<{16 * 8 + severity}>x: y")
        assert fields is not None and fields["facility"] == "local0"
        event = normalize(fields, now_us=time.time_ns() // 1000, limits=limits)
        assert not isinstance(event, Exception) and event.level == level, severity  # type: ignore[union-attr]
    assert parse_syslog("<191>x")["facility"] == "local7"  # type: ignore[index]
    assert parse_syslog("<192>x") is None and parse_syslog("<>x") is None


@pytest.mark.parametrize("system", ["Linux", "OpenSSH"])
def test_real_loghub_lines(system: str) -> None:
    lines = (SHARED / "data" / "loghub" / system / f"{system}_2k.log").read_text(errors="replace").splitlines()
    rows = loghub_rows(system)
    checked = 0
    for line, row in zip(lines, rows, strict=True):
        component = row["Component"] if system == "Linux" else "sshd"
        host = row["Level"] if system == "Linux" else row["Component"]
        pid = row["PID"] if system == "Linux" else row["Pid"]
        if " " in component:  # "syslogd 1.4.1: restart." has no RFC 3164 tag: all of it is the message
            continue
        parsed = parse_syslog(f"<38>{line}", now=NOW)
        assert parsed is not None
        assert (parsed["host"], parsed["service"], parsed.get("procid", "")) == (host, component, pid), line
        assert parsed["message"].strip() == row["Content"], line  # Loghub strips the content
        checked += 1
    assert checked >= 1900


# -- items --------------------------------------------------------------------------------------------


def test_item_flags_invalid_utf8_truncation_and_peer_host() -> None:
    item = syslog_item(Frame(b"<14>app: caf\xe9 ok\0", peer="192.0.2.7"))
    assert item is not None and item.flags == [INVALID_UTF8_FLAG]
    assert item.value == {"service": "app", "message": "caf\ufffd ok", "host": "192.0.2.7", "level": 6,
                          "facility": "user"}
    cut = syslog_item(Frame("<14>app: café".encode()[:-1], truncated=True))  # a cut inside a character
    assert cut is not None and cut.flags == [TRUNCATED_FLAG] and cut.value["message"] == "caf"  # type: ignore[index]
    assert syslog_item(Frame(b" \r\n\0")) is None


# -- RFC 6587 framing ---------------------------------------------------------------------------------



def counted(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


STREAM = (
    b"<14>first newline framed\n"
    + counted(b"<14>1 - - app - - - octet counted\n")  # a counted frame may carry its own newline
    + b"\n<14>second newline framed\r\n"
    + counted(b"<14>nospace") + counted(b"<14>again")  # counted frames back to back, no separator
    + b"not syslog at all\n"
    + b"12 apples and pears\n"  # digits and a space but no '<': a newline-framed line
)
FRAMES = [b"<14>first newline framed", b"<14>1 - - app - - - octet counted\n", b"<14>second newline framed\r",
          b"<14>nospace", b"<14>again", b"not syslog at all", b"12 apples and pears"]


def test_mixed_framing_in_one_stream() -> None:
    framer = SyslogFramer(1024)
    assert [f.payload for f in framer.feed(STREAM)] == FRAMES
    assert framer.finish() == []


def test_every_split_point_gives_the_same_frames() -> None:
    for cut in range(1, len(STREAM)):
        framer = SyslogFramer(1024)
        frames = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:]) + framer.finish()
        assert [f.payload for f in frames] == FRAMES, cut
    framer = SyslogFramer(1024)
    byte_by_byte = [f for i in range(len(STREAM)) for f in framer.feed(STREAM[i:i + 1])]
    assert [f.payload for f in byte_by_byte] == FRAMES


def test_nul_terminated_frames_keep_their_newlines() -> None:
    framer = SyslogFramer(1024)
    frames = framer.feed(b"<11>app: Traceback\n  File x\nValueError\0<14>app: next\0")
    assert [f.payload for f in frames] == [b"<11>app: Traceback\n  File x\nValueError", b"<14>app: next"]
    assert [f.payload for f in framer.feed(b"<14>a\nb\0")] == [b"<14>a\nb"]


def test_oversized_frames_are_truncated_and_the_stream_stays_in_step() -> None:
    framer = SyslogFramer(16)
    body = b"<14>" + b"x" * 40
    stream = f"{len(body)} ".encode() + body + b"<14>" + b"y" * 30 + b"\n<14>after\n"
    frames = [f for i in range(0, len(stream), 7) for f in framer.feed(stream[i:i + 7])]
    assert [(f.payload, f.truncated) for f in frames] == [
        (body[:16], True), ((b"<14>" + b"y" * 30)[:16], True), (b"<14>after", False)]


def test_end_of_stream_flushes_the_last_unterminated_frame() -> None:
    framer = SyslogFramer(1024)
    assert framer.feed(b"<14>one\n<14>two without newline") == [Frame(b"<14>one")]
    assert framer.finish() == [Frame(b"<14>two without newline")]
    cut = SyslogFramer(1024)
    assert cut.feed(b"100 <14>short") == []
    assert cut.finish() == [Frame(b"<14>short", truncated=True)]
