"""Preparing _bulk lines straight from queue payloads gives exactly what encoding LogEvents gives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from logflow.backends.store.base import PreparedBatch
from logflow.backends.store.opensearch.bulk import _whole
from logflow.backends.store.opensearch.mapping import (
    INDEXED_RECORD_MAX_BYTES,
    _attr_terms,
    attr_term,
    check_prefix,
    encode_indexed_record,
    index_name,
    to_document,
)
from logflow.backends.store.opensearch.mapping import _iso_millis as fast_iso_millis
from logflow.backends.store.opensearch.prepare import prepare_payloads
from logflow.domain.attributes import canonical_text
from logflow.domain.events import LogEvent
from logflow.domain.levels import Level
from tests.unit.test_embedded_prepare import BASE_US, DAMAGED_PAYLOADS, DAY_US, loghub_events

PREFIX = "logflow-t"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_millis(ts_us: int) -> str:
    """The reference: datetime's own ISO form, floored to the millisecond."""
    moment = _EPOCH + timedelta(milliseconds=ts_us // 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bulk_lines(event: LogEvent) -> bytes:
    """An event's lines in a request to its day's index (the reference the fast path must equal)."""
    return orjson.dumps({"create": {"_id": event.id}}) + b"\n" + orjson.dumps(to_document(event)) + b"\n"


def by_day(events: list[LogEvent]) -> dict[int, list[bytes]]:
    """Each day's lines in id order (stable: of two events with one id, the earlier first)."""
    days: dict[int, list[LogEvent]] = {}
    for event in events:
        days.setdefault(event.timestamp // DAY_US, []).append(event)
    return {day: [bulk_lines(e) for e in sorted(group, key=lambda e: e.id.encode())] for day, group in days.items()}


def prepared_by_day(prepared: PreparedBatch) -> dict[int, list[bytes]]:
    """Each day block cut back into its events' lines at the offsets it gives."""
    days: dict[int, list[bytes]] = {}
    for day, block, ends in prepared.data:
        assert day not in days and ends[-1] == len(block)
        days[day] = [block[start:end] for start, end in zip([0, *ends], ends, strict=False)]
    return days


def test_prepared_lines_equal_encoded_events_byte_for_byte() -> None:
    events = loghub_events("Hadoop", 1000) + loghub_events("OpenSSH", 300)
    events.append(LogEvent(
        id='quote"and\\slash', timestamp=-1_234_567, level=Level.CRITICAL, service="sérvice ✓",
        message="line one\nline two\t日本", host="h", trace_id="t", span_id="s", request_id="r",
        correlation_id="c", attributes={"nested": {"a": [1, 2]}, "ok": False, "none": None, "k=v": "x"},
        flags=["invalid_utf8"],
    ))
    prepared = prepare_payloads([e.to_wire() for e in events])
    assert prepared.undecodable == []
    assert len({e.timestamp // DAY_US for e in events}) > 1  # blocks of several days
    # Same days in the order they first appear, each day's events in id order.
    assert list(prepared_by_day(prepared).items()) == list(by_day(events).items())


def test_a_days_events_go_in_id_order_and_of_one_id_the_first_queued_stays_first() -> None:
    # Queue order as a batch from several Kafka partitions has it: ids (event-time ULIDs) interleaved.
    events = loghub_events("OpenSSH", 200)
    events.sort(key=lambda e: e.id)
    interleaved = events[1::2] + events[::2]
    first, again = (LogEvent(id=events[50].id, timestamp=events[50].timestamp, level=Level.INFO, service="dup",
                             message=text) for text in ("z queued first", "a queued second"))
    payloads = [e.to_wire() for e in interleaved[:100]] + [first.to_wire()] + [e.to_wire() for e in interleaved[100:]]
    payloads.append(again.to_wire())
    prepared = prepare_payloads(payloads)
    days = prepared_by_day(prepared)
    for day_lines in days.values():
        ids = [orjson.loads(line.split(b"\n")[0])["create"]["_id"] for line in day_lines]
        assert ids == sorted(ids)
    lines = [line for day_lines in days.values() for line in day_lines]
    assert len(lines) == 202
    same = [line for line in lines if b'"service":"dup"' in line]
    # Stable: the first queued stays first although its lines sort after the second's.
    assert [orjson.loads(line.split(b"\n")[1])["message"] for line in same] == ["z queued first", "a queued second"]
    # The API's own format (3) is ordered the same way.
    indexed = prepare_payloads([indexed_payload(e) for e in interleaved])
    assert prepared_by_day(indexed) == {day: [line for line in day_lines if b'"dup"' not in line]
                                        for day, day_lines in prepared_by_day(prepared).items()}


def test_queue_format_1_payloads_prepare_like_format_2() -> None:
    event = LogEvent(id="x1", timestamp=BASE_US, level=Level.ERROR, service="api", message="disk full",
                     host="h", attributes={"path": "/var"})
    prepared = prepare_payloads([event.to_json(), event.to_wire()])
    assert prepared_by_day(prepared) == {event.timestamp // DAY_US: [bulk_lines(event)] * 2}


def indexed_payload(event: LogEvent) -> bytes:
    """Wire format 3 of ``event``, as the API writes it when the store is OpenSearch."""
    return encode_indexed_record(event.id, event.timestamp, event.level, event.service, event.message, event.host,
                                 event.trace_id, event.span_id, event.request_id, event.correlation_id,
                                 event.attributes, event.flags)[2]


def test_format_3_payloads_prepare_to_the_bytes_format_2_payloads_give() -> None:
    events = loghub_events("Hadoop", 1000) + loghub_events("OpenSSH", 300)
    events.append(LogEvent(
        id="01KAV9FT3VW08TVCCGQY6JJQQG", timestamp=-1_234_567, level=Level.CRITICAL, service="sérvice ✓",
        message='line one\nline two\t日本 "quoted"', host="h", trace_id="t", span_id="s", request_id="r",
        correlation_id="c", flags=["invalid_utf8"],
        attributes={"nested": {"a": [1, 2]}, "ok": False, "none": None, "k=v": "x", "n": 7, "big": 1e16, "f": 0.1},
    ))
    format_3 = prepare_payloads([indexed_payload(e) for e in events])
    assert format_3.undecodable == []
    assert format_3.data == prepare_payloads([e.to_wire() for e in events]).data
    assert list(prepared_by_day(format_3).items()) == list(by_day(events).items())


def test_a_document_too_large_for_kafka_goes_on_the_queue_as_format_2() -> None:
    """A key of '=' signs is 4x as long in attr_kv: the largest event the API accepts (256 KiB)
    would make a 1 MB format-3 record, over Kafka's default message limit."""
    wide = LogEvent(id="w", timestamp=BASE_US, level=Level.INFO, service="s", message="",
                    attributes={"=" * 262_119: ""})
    just_under = LogEvent(id="u", timestamp=BASE_US, level=Level.INFO, service="s", message="x" * 500_000)
    wide_payload, under_payload = indexed_payload(wide), indexed_payload(just_under)
    assert wide_payload[0] == 2 and len(wide_payload) < 300_000
    assert under_payload[0] == 3 and len(under_payload) <= INDEXED_RECORD_MAX_BYTES + 100
    assert prepare_payloads([wide_payload]).data == prepare_payloads([wide.to_wire()]).data
    assert prepare_payloads([under_payload]).data == prepare_payloads([just_under.to_wire()]).data


_SCALARS = st.one_of(st.text(max_size=8), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.booleans(),
                     st.none(), st.floats(allow_nan=True, allow_infinity=True),
                     st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@given(st.dictionaries(st.text(max_size=6), _SCALARS, max_size=8))
@example({"tiny": 1e-07, "huge": 1e16, "nan": float("nan"), "inf": -float("inf"), "yes": True, "max": 2**64 - 1})
def test_attribute_terms_spell_values_as_field_filters_do(attributes: dict[str, object]) -> None:
    """The int and float shortcuts give canonical_text's spelling, for every value."""
    expected = [attr_term(key, text) for key, value in attributes.items()
                if (text := canonical_text(value)) is not None]
    assert _attr_terms(attributes) == expected


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda p: p.replace(b"01KAV9FT3V", b'01KAV9FT3"'), "invalid event id"),
    (lambda p: p.replace(b'"message":"m"', b'"message":"m"}\n{"delete":{"_id":"x"}'), "on one line"),
    (lambda p: p[: p.index(b'{"id"')] + b"[1]", "on one line"),
    (lambda p: p[:12], "unpack"),
    (lambda p: p.replace(b'{"id":"01KAV9FT3VW08TVCCGQY6JJQQG"', b'{"id":"another-event"'), "starting with its id"),
])
def test_format_3_payloads_that_could_change_a_bulk_request_are_refused(tamper: Callable[[bytes], bytes],
                                                                        reason: str) -> None:
    good = LogEvent(id="ok", timestamp=BASE_US, level=Level.INFO, service="s", message="fine")
    event = LogEvent(id="01KAV9FT3VW08TVCCGQY6JJQQG", timestamp=BASE_US, level=Level.INFO, service="s", message="m")
    prepared = prepare_payloads([indexed_payload(good), tamper(indexed_payload(event)), good.to_wire()])
    assert [index for index, _ in prepared.undecodable] == [1]
    assert reason in prepared.undecodable[0][1]
    assert prepared_by_day(prepared) == {BASE_US // DAY_US: [bulk_lines(good)] * 2}


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))  # years 1 to 9999
def test_minute_cached_timestamps_equal_the_datetime_ones(ts_us: int) -> None:
    assert fast_iso_millis(ts_us) == _iso_millis(ts_us)


def test_a_refused_item_gives_its_event_back_for_the_dead_letters() -> None:
    (event,) = loghub_events("Spark", 1)
    ((day, block, ends),) = prepare_payloads([event.to_wire()]).data
    assert _whole(index_name(PREFIX, day), block, ends).event(0) == event


@pytest.mark.parametrize(("payload", "reason"), DAMAGED_PAYLOADS)
def test_damaged_payloads_are_reported_and_the_rest_prepared(payload: bytes, reason: str) -> None:
    good = LogEvent(id="ok", timestamp=BASE_US, level=Level.INFO, service="s", message="fine")
    prepared = prepare_payloads([good.to_wire(), payload, good.to_wire()])
    assert [index for index, _ in prepared.undecodable] == [1]
    assert reason in prepared.undecodable[0][1]
    assert prepared.undecodable[0][1].startswith("undecodable queue payload")
    assert prepared_by_day(prepared) == {BASE_US // DAY_US: [bulk_lines(good)] * 2}


@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=8), st.data())
def test_a_block_splits_at_event_boundaries_into_balanced_requests(sizes: list[int], parts: int,
                                                                   data: st.DataObject) -> None:
    lines = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    block = b"".join(lines)
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    first = data.draw(st.integers(min_value=0, max_value=len(sizes) - 1))
    stop = data.draw(st.integers(min_value=first + 1, max_value=len(sizes)))
    chunk = _whole("i", block, ends)
    chunk.first, chunk.stop = first, stop
    pieces = chunk.split(parts)
    assert 1 <= len(pieces) <= min(parts, stop - first)
    # Contiguous, none empty, and together exactly the chunk's events.
    assert [p.first for p in pieces] == [first] + [p.stop for p in pieces[:-1]]
    assert pieces[-1].stop == stop and all(len(p) >= 1 for p in pieces)
    assert b"".join(p.body() for p in pieces) == chunk.body() == b"".join(lines[first:stop])
    assert [p.lines(i) for p in pieces for i in range(p.first, p.stop)] == lines[first:stop]
    # Each piece holds at most its share of the bytes plus one event.
    share = -(-chunk.size // parts)
    assert all(p.size <= share + max(sizes[first:stop]) for p in pieces)


@pytest.mark.parametrize("prefix", ["logflow", "logs.eu-1", "a_b", "x" * 200])
def test_index_prefixes_that_start_an_index_name_are_kept(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "Logs", "-logs", "_logs", "+logs", ".logs", "lo gs", "lo/gs", "lo:gs",
                                    "lo%61gs", "x" * 201])
def test_index_prefixes_the_engine_or_a_url_path_would_misread_are_refused(prefix: str) -> None:
    # "%" is valid in an index name, but the name travels in URL paths, where "%61" reads as "a".
    with pytest.raises(ValueError, match="cannot start an index name"):
        check_prefix(prefix)
