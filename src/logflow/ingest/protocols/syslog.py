"""Syslog wire format: RFC 5424 and RFC 3164 messages, RFC 6587 TCP framing, to ingest items.

Mapping (see docs/protocols/syslog.md): severity → ``level``, APP-NAME or TAG → ``service``,
HOSTNAME → ``host`` (the sender's address when the message has none), TIMESTAMP → ``timestamp``
(receive time when absent), and the attributes ``facility`` (name), ``procid``, ``msgid`` and
``sd.<SD-ID>.<PARAM>`` for structured data. Any frame with a valid PRI is a syslog message (RFC
3164 §4.3.3 makes everything after the PRI content when no header is recognized); a frame
without one is kept whole as the message and flagged ``syslog_unparsed``: nothing is dropped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from logflow.ingest.decode import INVALID_UTF8_FLAG, DecodedItem

UNPARSED_FLAG = "syslog_unparsed"
TRUNCATED_FLAG = "syslog_truncated"

# RFC 5424 §6.2.1 facility codes, named as Python's logging.handlers.SysLogHandler names them.
FACILITIES: tuple[str, ...] = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)

_PRI = re.compile(r"<(\d{1,3})>")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]\d\d:\d\d)")
_BSD_TIME = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ 0-3]?\d) (\d\d):(\d\d):(\d\d)(?: |$)")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# TAG[PID]: as syslogd/rsyslog write it; the tag stops at whitespace, '[' or ':'.
_TAG = re.compile(r"([^\s\[\]:]{1,64})(?:\[([^\]\s]{0,128})\])?:(?: |$)")
_HOSTNAME = re.compile(r"[!-~]{1,255}")
_HEADER_FIELD_MAX = {"hostname": 255, "app": 48, "procid": 128, "msgid": 32}
_SD_NAME_END = frozenset("= ]\"")
_BOM = "\ufeff"
_TRAILING = "\r\n\0 \t"
BLANK = b" \t\r\n\x0b\x0c\0"  # a frame of only these is no message


@dataclass(slots=True)
class Frame:
    """One syslog message as received: the raw bytes, who sent it, and whether it was cut short."""

    payload: bytes
    peer: str | None = None
    truncated: bool = False


# -- RFC 5424 ----------------------------------------------------------------------------------------


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rfc3339(text: str) -> str | None:
    """``text`` as an ISO 8601 UTC string if it is a valid RFC 3339 timestamp (digits beyond µs dropped)."""
    if not _RFC3339.fullmatch(text):
        return None
    text = text.upper()
    if "." in text:  # datetime keeps at most microseconds
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[:min(digits, 6)]}{tail[digits:]}"
    try:
        return _iso_utc(datetime.fromisoformat(text))
    except ValueError:  # e.g. month 13: structurally right, not a date
        return None


def _sd_name(text: str, pos: int) -> tuple[str, int] | None:
    end = pos
    while end < len(text) and end - pos <= 32 and text[end] not in _SD_NAME_END and " " < text[end] <= "~":
        end += 1
    return (text[pos:end], end) if pos < end <= pos + 32 else None


def parse_structured_data(text: str, pos: int) -> tuple[dict[str, Any], int] | None:
    """STRUCTURED-DATA at ``pos``: ``sd.<SD-ID>.<PARAM>`` attributes and the index after it, or None.

    Escapes (``\\"``, ``\\\\``, ``\\]``) are undone; a backslash before any other character is kept,
    as RFC 5424 §6.3.3 says. A repeated PARAM becomes a list; an element without params is ``True``.
    """
    if text.startswith("-", pos):
        return {}, pos + 1
    out: dict[str, Any] = {}
    if not text.startswith("[", pos):
        return None
    while text.startswith("[", pos):
        name = _sd_name(text, pos + 1)
        if name is None:
            return None
        sd_id, pos = name
        params: dict[str, Any] = {}
        while text.startswith(" ", pos):
            name = _sd_name(text, pos + 1)
            if name is None or not text.startswith('="', name[1]):
                return None
            param, pos = name[0], name[1] + 2
            chars: list[str] = []
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in '"\\]':
                    pos += 1
                chars.append(text[pos])
                pos += 1
            if pos >= len(text):
                return None  # unterminated value
            pos += 1
            value = "".join(chars)
            previous = params.get(param)
            params[param] = value if previous is None else [
                *(previous if isinstance(previous, list) else [previous]), value]
        if not text.startswith("]", pos):
            return None
        pos += 1
        if params:
            out.update({f"sd.{sd_id}.{param}": value for param, value in params.items()})
        else:
            out[f"sd.{sd_id}"] = True
    return out, pos


def parse_rfc5424(rest: str) -> dict[str, Any] | None:
    """The part after PRI of an RFC 5424 message (``1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]``), or None."""
    parts = rest.split(" ", 6)
    if len(parts) < 7 or parts[0] != "1":
        return None
    _, stamp, hostname, app, procid, msgid, tail = parts
    fields: dict[str, Any] = {}
    if stamp != "-":
        iso = _rfc3339(stamp)
        if iso is None:
            return None
        fields["timestamp"] = iso
    for key, value in (("hostname", hostname), ("app", app), ("procid", procid), ("msgid", msgid)):
        if not value or len(value) > _HEADER_FIELD_MAX[key] or not value.isprintable():
            return None
    sd = parse_structured_data(tail, 0)
    if sd is None:
        return None
    attributes, end = sd
    if end < len(tail) and tail[end] != " ":
        return None
    message = tail[end + 1:]
    fields["message"] = message.removeprefix(_BOM)
    if hostname != "-":
        fields["host"] = hostname
    if app != "-":
        fields["service"] = app
    if procid != "-":
        fields["procid"] = procid
    if msgid != "-":
        fields["msgid"] = msgid
    fields.update(attributes)
    return fields


# -- RFC 3164 ----------------------------------------------------------------------------------------


def _bsd_timestamp(match: re.Match[str], now: float) -> str | None:
    """``Mmm dd hh:mm:ss`` in the receiver's local time, in the current year unless that is >1 day ahead."""
    month = _MONTHS.index(match.group(1)) + 1
    day, hour, minute, second = (int(match.group(i)) for i in range(2, 6))
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        try:  # validates the day of month too (Feb 29 only in leap years)
            datetime(candidate, month, day)
        except ValueError:
            continue
        epoch = time.mktime((candidate, month, day, hour, minute, min(second, 59), 0, 0, -1))
        if epoch <= now + 86400:
            return _iso_utc(datetime.fromtimestamp(epoch, UTC))
    return None


def parse_rfc3164(rest: str, now: float) -> dict[str, Any]:
    """The part after PRI of a BSD syslog message; whatever is not a header is the message."""
    fields: dict[str, Any] = {}
    body = rest
    iso: str | None = None
    stamp = _BSD_TIME.match(rest)
    if stamp is not None:
        iso, end = _bsd_timestamp(stamp, now), stamp.end()
    elif (rfc3339 := _RFC3339.match(rest)) is not None and rest[rfc3339.end():rfc3339.end() + 1] in ("", " "):
        # rsyslog's RSYSLOG_ForwardFormat: an RFC 3339 time in an otherwise BSD-style header.
        iso, end = _rfc3339(rfc3339.group(0)), rfc3339.end()
    if iso is not None:
        fields["timestamp"] = iso
        body = rest[end:].lstrip(" ")
        # HOSTNAME, unless the next word is already the TAG (local senders leave the host out).
        word = body.split(" ", 1)[0]
        if not _TAG.match(body) and _HOSTNAME.fullmatch(word):
            fields["host"] = word
            body = body[len(word):].lstrip(" ")
    tag = _TAG.match(body)
    if tag is not None:
        fields["service"] = tag.group(1)
        if tag.group(2):
            fields["procid"] = tag.group(2)
        body = body[tag.end():]
    fields["message"] = body
    return fields


# -- both --------------------------------------------------------------------------------------------


def parse_syslog(text: str, *, now: float | None = None) -> dict[str, Any] | None:
    """One syslog message (without framing) as a LogFlow item, or None when it has no valid PRI."""
    pri = _PRI.match(text)
    if pri is None or int(pri.group(1)) > 191:
        return None
    facility, severity = divmod(int(pri.group(1)), 8)
    rest = text[pri.end():]
    fields = parse_rfc5424(rest) if rest.startswith("1 ") else None
    if fields is None:
        fields = parse_rfc3164(rest, time.time() if now is None else now)
    fields["level"] = severity  # the pipeline maps syslog severities 0-7 to levels
    fields["facility"] = FACILITIES[facility]
    return fields


def _decode(payload: bytes, truncated: bool) -> tuple[str, list[str]]:
    try:
        return payload.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        # A cut at max_frame_bytes may split a character: that is truncation, not bad input.
        if truncated and exc.reason == "unexpected end of data":
            try:
                return payload[:exc.start].decode("utf-8"), []
            except UnicodeDecodeError:
                pass
        return payload.decode("utf-8", errors="replace"), [INVALID_UTF8_FLAG]


def syslog_item(frame: Frame, index: int = 0, *, now: float | None = None) -> DecodedItem | None:
    """The ingest item of one frame (None for a frame with nothing but whitespace)."""
    text, flags = _decode(frame.payload, frame.truncated)
    text = text.rstrip(_TRAILING)
    if not text.strip(BLANK.decode()):
        return None
    fields = parse_syslog(text, now=now)
    if fields is None:
        fields = {"message": text}
        flags.append(UNPARSED_FLAG)
    if frame.truncated:
        flags.append(TRUNCATED_FLAG)
    if "host" not in fields and frame.peer:
        fields["host"] = frame.peer
    return DecodedItem(index=index, value=fields, flags=flags)


def syslog_items(frames: list[Frame]) -> list[DecodedItem]:
    """Items of a batch of frames, indexed in order (blank frames are skipped)."""
    now = time.time()
    items: list[DecodedItem] = []
    for frame in frames:
        item = syslog_item(frame, len(items), now=now)
        if item is not None:
            items.append(item)
    return items


# -- RFC 6587 TCP framing ------------------------------------------------------------------------------

_DIGITS = b"0123456789"
_MAX_COUNT_DIGITS = 10


class SyslogFramer:
    """Splits one TCP connection's byte stream into frames, choosing the framing per frame.

    A frame starting ``<digits> <`` is octet-counted (RFC 6587 §3.4.1: the count, a space, then a
    syslog message, which always starts with ``<``). Other frames end at a terminator, chosen once
    per connection by the first such frame: NUL if a NUL comes before any newline that starts a new
    message (Python's SysLogHandler over TCP ends messages with NUL, and they may contain newlines),
    otherwise newline. A frame longer than ``max_frame`` is cut to ``max_frame`` bytes and marked
    truncated, and the rest of it is skipped by its count or up to its terminator, so the stream
    never loses its place.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized counted frame still to discard
        self._skip_line = False  # discarding the rest of an oversized terminated frame
        self._terminator_byte: bytes | None = None  # b"\n" or b"\0" once decided

    def _terminator(self) -> int:
        """Index of the current frame's terminator, or -1."""
        if self._terminator_byte is None:
            nul = self._buf.find(0)
            next_message = self._buf.find(b"\n<")
            if nul >= 0 and (next_message < 0 or nul < next_message):
                self._terminator_byte = b"\0"
            elif next_message >= 0 or self._buf.find(b"\n") >= 0:
                self._terminator_byte = b"\n"
            else:
                return -1
        return self._buf.find(self._terminator_byte)

    def _counted(self) -> tuple[int, int] | None:
        """(header length, count) of an octet-counted frame, (0, 0) if not one, None if undecided yet."""
        buf = self._buf
        end = 0
        while end < len(buf) and end <= _MAX_COUNT_DIGITS and buf[end] in _DIGITS:
            end += 1
        if end == 0 or end > _MAX_COUNT_DIGITS or buf[0] == ord("0"):
            return 0, 0
        if end + 2 > len(buf):
            return None  # the count or what follows it has not arrived yet
        if buf[end] != ord(" ") or buf[end + 1] != ord("<"):
            return 0, 0
        return end + 1, int(buf[:end])

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``."""
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        while buf:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                continue
            if self._skip_line:
                end = self._terminator()
                if end < 0:
                    buf.clear()
                    break
                del buf[:end + 1]
                self._skip_line = False
                continue
            start = 0
            while start < len(buf) and buf[start] in b"\r\n\0":
                start += 1
            del buf[:start]
            if not buf:
                break
            counted = self._counted()
            if counted is None:
                break
            header, count = counted
            if header:
                size = min(count, self.max_frame)
                if len(buf) < header + size:
                    break
                frames.append(Frame(bytes(buf[header:header + size]), truncated=count > self.max_frame))
                del buf[:header + size]
                self._skip = count - size
                continue
            end = self._terminator()
            if end < 0:
                if len(buf) > self.max_frame:
                    frames.append(Frame(bytes(buf[:self.max_frame]), truncated=True))
                    buf.clear()
                    self._skip_line = True
                break
            frames.append(Frame(bytes(buf[:min(end, self.max_frame)]), truncated=end > self.max_frame))
            del buf[:end + 1]
        return frames

    def finish(self) -> list[Frame]:
        """At end of stream: what is left is the last frame (a sender may omit the final newline)."""
        left = bytes(self._buf).strip(b"\r\n\0")
        self._buf.clear()
        if not left or self._skip or self._skip_line:
            return []
        counted = self._counted_prefix(left)
        if counted is not None:  # a counted frame cut short by the close
            return [Frame(counted, truncated=True)]
        return [Frame(left[:self.max_frame], truncated=len(left) > self.max_frame)]

    @staticmethod
    def _counted_prefix(data: bytes) -> bytes | None:
        head, sep, rest = data.partition(b" ")
        if sep and head.isdigit() and not head.startswith(b"0") and rest.startswith(b"<") and int(head) > len(rest):
            return rest
        return None
