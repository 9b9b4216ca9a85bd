"""Normalization of single items: the event model, levels, timestamps and per-item limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logflow.domain.levels import Level, parse_level
from logflow.ingest.limits import IngestLimits
from logflow.ingest.normalize import ItemError, LogEvent, normalize
from logflow.ingest.timestamps import TimestampError, parse_timestamp

NOW = int(datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp() * 1_000_000)
LIMITS = IngestLimits()


def ok(item: object, **kw: object) -> LogEvent:
    result = normalize(item, now_us=NOW, limits=kw.pop("limits", LIMITS))  # type: ignore[arg-type]
    assert isinstance(result, LogEvent), result
    return result


def err(item: object, limits: IngestLimits = LIMITS) -> ItemError:
    result = normalize(item, now_us=NOW, limits=limits)
    assert isinstance(result, ItemError), result
    return result


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-27T10:00:00Z", "2026-11-27T10:00:00+00:00"),
        ("2026-11-27T10:00:00+02:00", "2026-11-27T08:00:00+00:00"),
        ("2026-11-27T10:00:00", "2026-11-27T10:00:00+00:00"),  # naive means UTC
        ("2026-11-27 10:00:00.123456", "2026-11-27T10:00:00.123456+00:00"),
        (1795773600, "2026-11-27T10:00:00+00:00"),  # epoch seconds
        (1795773600.5, "2026-11-27T10:00:00.500000+00:00"),
        (1795773600123, "2026-11-27T10:00:00.123000+00:00"),  # ms
        (1795773600123456, "2026-11-27T10:00:00.123456+00:00"),  # µs
        (1795773600123456789, "2026-11-27T10:00:00.123456+00:00"),  # ns
        ("1795773600123", "2026-11-27T10:00:00.123000+00:00"),  # numeric string
    ],
)
def test_timestamps(raw: object, expected: str) -> None:
    us = parse_timestamp(raw)
    assert datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat() == expected


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
       st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_utc_z_form_is_read_exactly(moment: datetime, precision: str) -> None:
    """The "...Z" form takes a shortcut; it must give the exact microseconds of the general path."""
    text = moment.isoformat(timespec=precision) + "Z"
    as_utc = moment.replace(tzinfo=UTC)
    expected = (as_utc - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution)
    if precision != "microseconds":
        expected -= expected % (1_000 if precision == "milliseconds" else 1_000_000)
    assert parse_timestamp(text) == expected
    assert parse_timestamp(" " + text) == expected  # the general path (it strips spaces)


@pytest.mark.parametrize("raw", ["yesterday", "", True, {"a": 1}, "2026-13-45T00:00:00", "2026-13-45T00:00:00Z",
                                 "Z", "12Z", "2026-11-27T25:00:00Z"])
def test_bad_timestamps(raw: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(raw)


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("warning", Level.WARN), ("WARN", Level.WARN), ("Err", Level.ERROR), ("fatal", Level.CRITICAL),
        ("crit", Level.CRITICAL), ("panic", Level.CRITICAL), ("notice", Level.INFO), ("trace", Level.TRACE),
        (3, Level.ERROR), ("4", Level.WARN), (0, Level.CRITICAL), (7, Level.DEBUG), ("emerg", Level.CRITICAL),
    ],
)
def test_level_aliases(raw: object, level: Level) -> None:
    assert parse_level(raw) is level
    assert ok({"message": "m", "level": raw}).level is level


@pytest.mark.parametrize("raw", ["loud", 8, -1, True, 2.5])
def test_unknown_level_is_rejected_with_the_accepted_list(raw: object) -> None:
    problem = err({"message": "m", "level": raw})
    assert problem.code == 422 and "accepted" in problem.reason


def test_full_event_and_attributes() -> None:
    event = ok({
        "id": "evt-1", "timestamp": "2026-11-27T11:59:00Z", "level": "error", "service": "payment-service",
        "host": "pay-1", "message": "card declined", "trace_id": "t1", "request_id": "r1",
        "correlation_id": "c1", "metadata": {"amount": 12.5, "user": {"id": 7}}, "region": "eu-west-1",
    })
    assert (event.id, event.level, event.service, event.host) == ("evt-1", Level.ERROR, "payment-service", "pay-1")
    assert (event.trace_id, event.request_id, event.correlation_id) == ("t1", "r1", "c1")
    assert event.attributes == {"amount": 12.5, "user": {"id": 7}, "region": "eu-west-1"}
    api = event.to_api()
    assert api["timestamp"] == "2026-11-27T11:59:00.000000Z"
    assert api["metadata"]["region"] == "eu-west-1"


def test_defaults_and_generated_time_ordered_ids() -> None:
    first = ok({"message": "a"})
    second = ok({"message": "b", "timestamp": NOW + 1000})
    assert first.timestamp == NOW and first.level is Level.INFO and first.service == "unknown"
    assert len(first.id) == 26 and first.id < second.id


def test_shipper_field_names() -> None:
    event = ok({"@timestamp": "2026-11-27T11:00:00Z", "msg": "hello", "severity": "WARNING"})
    assert event.message == "hello" and event.level is Level.WARN


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"level": "info"}, "missing 'message'"),
        ({"message": {"nested": 1}}, "'message' must be a string"),
        ({"message": "m", "timestamp": "soon"}, "invalid 'timestamp'"),
        ({"message": "m", "timestamp": "2026-11-30T00:00:00Z"}, "in the future"),
        ({"message": "m", "timestamp": "2026-11-01T00:00:00Z"}, "older than the retention window"),
        ({"message": "m", "id": "has space"}, "'id' must be"),
        ({"message": "m", "service": ["a"]}, "'service' must be a string"),
        ({"message": "m", "service": "s" * 300}, "longer than 256"),
        ("just a string", "must be a JSON object"),
    ],
)
def test_rejections_name_the_problem(item: object, fragment: str) -> None:
    assert fragment in err(item).reason


def test_field_count_and_depth_limits() -> None:
    limits = IngestLimits(max_fields=5, max_depth=3)
    assert "more than 5 attribute fields" in err({"message": "m", **{f"k{i}": i for i in range(6)}}, limits).reason
    ok({"message": "m", **{f"k{i}": i for i in range(5)}}, limits=limits)
    deep = {"message": "m", "a": {"b": {"c": {"d": 1}}}}
    assert "deeper than 3" in err(deep, limits).reason
    ok({"message": "m", "a": {"b": {"c": 1}}}, limits=limits)


def test_an_event_shares_no_mutable_object_with_the_item_it_came_from() -> None:
    metadata = {"user": "u1"}
    flags = ["invalid_utf8"]
    first = normalize({"message": "a", "metadata": metadata}, now_us=NOW, limits=LIMITS, flags=flags)
    second = normalize({"message": "b", "metadata": metadata}, now_us=NOW, limits=LIMITS, flags=None)
    assert isinstance(first, LogEvent) and isinstance(second, LogEvent)
    first.attributes["user"] = "changed"
    first.flags.append("more")
    assert metadata == {"user": "u1"} and flags == ["invalid_utf8"]
    assert second.attributes == {"user": "u1"} and second.flags == []
