"""The synthetic log generator: shape, determinism, level mix, request flows, incidents, timestamps."""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import orjson
import pytest

from logflow.domain.levels import Level, parse_level
from logflow.generator import DEFAULT_SERVICES, GeneratorConfig, LogGenerator, to_ndjson

START_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
BASE_KEYS = {"timestamp", "level", "service", "host", "message", "metadata"}
REQUEST_KEYS = {"request_id", "trace_id", "span_id"}


def quiet(seed: int = 7, **kwargs: object) -> LogGenerator:
    """A seeded generator with simulated time and no random incidents."""
    options: dict[str, object] = {"seed": seed, "start_us": START_US, "incident_probability": 0.0, **kwargs}
    return LogGenerator(GeneratorConfig(**options))  # type: ignore[arg-type]


def level_of(event: dict[str, object]) -> Level:
    level = parse_level(event["level"])
    assert level is not None, event["level"]
    return level


def to_us(stamp: object) -> int:
    assert isinstance(stamp, str) and ISO.match(stamp), stamp
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def test_default_services() -> None:
    assert DEFAULT_SERVICES == (
        "api-gateway", "auth-service", "payment-service", "order-service",
        "inventory-service", "user-service", "notification-service", "search-service",
    )


def test_same_seed_same_events_and_different_seed_differs() -> None:
    first, second = quiet(seed=42), quiet(seed=42)
    assert [first.batch(500) for _ in range(4)] == [second.batch(500) for _ in range(4)]
    assert quiet(seed=42).batch(200) != quiet(seed=43).batch(200)


def test_seed_with_wall_clock_only_timestamps_differ() -> None:
    a = LogGenerator(GeneratorConfig(seed=5, incident_probability=0.0)).batch(300)
    b = LogGenerator(GeneratorConfig(seed=5, incident_probability=0.0)).batch(300)
    strip = [{k: v for k, v in e.items() if k != "timestamp"} for e in a]
    assert strip == [{k: v for k, v in e.items() if k != "timestamp"} for e in b]


def test_random_incidents_are_deterministic_too() -> None:
    runs = []
    for _ in range(2):
        gen = LogGenerator(GeneratorConfig(seed=9, start_us=START_US, incident_probability=0.3))
        runs.append(([gen.batch(100) for _ in range(30)], gen.incidents_started))
    assert runs[0] == runs[1]
    assert runs[0][1] > 0


def test_every_event_has_the_ingest_shape_and_serializes() -> None:
    events = quiet().batch(20_000)
    assert len(events) == 20_000
    services = set(DEFAULT_SERVICES)
    for event in events:
        keys = set(event)
        assert BASE_KEYS <= keys <= BASE_KEYS | REQUEST_KEYS, keys
        assert "id" not in event
        assert event["service"] in services
        assert isinstance(event["host"], str) and event["host"].startswith(f"{event['service']}-")
        assert isinstance(event["message"], str) and event["message"] and "{" not in event["message"]
        assert isinstance(event["metadata"], dict) and event["metadata"]
        level_of(event)
        to_us(event["timestamp"])
        if "trace_id" in event:
            assert keys == BASE_KEYS | REQUEST_KEYS
            assert re.fullmatch(r"[0-9a-f]{32}", str(event["trace_id"]))
            assert re.fullmatch(r"req_[0-9a-f]{16}", str(event["request_id"]))
    assert {e["service"] for e in events} == services
    scoped = sum("trace_id" in e for e in events) / len(events)
    assert 0.75 < scoped < 0.95  # most lines belong to a request; background lines do not
    lines = to_ndjson(events).split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(events) + 1
    assert [orjson.loads(line) for line in lines[:-1]] == events
    assert to_ndjson([]) == b""


def test_level_mix_over_50k_events() -> None:
    events = quiet(seed=1).batch(50_000)
    counts = Counter(level_of(e) for e in events)
    share = {level: counts[level] / len(events) for level in Level}
    assert share[Level.DEBUG] == pytest.approx(0.10, abs=0.01)
    assert share[Level.INFO] == pytest.approx(0.70, abs=0.015)
    assert share[Level.WARN] == pytest.approx(0.12, abs=0.01)
    assert share[Level.ERROR] == pytest.approx(0.07, abs=0.008)
    assert share[Level.CRITICAL] == pytest.approx(0.01, abs=0.004)
    assert 0 < share[Level.TRACE] < 0.015
    canonical = {level.name for level in Level}
    aliased = [e["level"] for e in events if e["level"] not in canonical]
    assert 0.04 < len(aliased) / len(events) < 0.06
    assert {"warning", "err", "info"} <= set(aliased)


def test_messages_mix_common_and_rare_terms() -> None:
    events = quiet(seed=3).batch(30_000)
    messages = [str(e["message"]) for e in events]
    assert sum("request" in m for m in messages) / len(messages) > 0.05
    assert sum("completed" in m for m in messages) / len(messages) > 0.03
    assert any("SocketTimeoutException" in m for m in messages)
    assert any("SQL timeout" in m for m in messages)
    shapes = {re.sub(r"[0-9a-f]{6,}|\d+", "#", m.split(":")[0])[:40] for m in messages}
    assert len(shapes) >= 50  # many distinct templates, not a handful of repeated lines


def test_gateway_lines_carry_http_metadata() -> None:
    events = quiet(seed=4).batch(10_000)
    completed = [e for e in events if e["service"] == "api-gateway" and "status" in e["metadata"]]  # type: ignore[operator]
    assert len(completed) > 300
    for event in completed:
        meta = event["metadata"]
        assert isinstance(meta, dict)
        assert meta["method"] in {"GET", "POST", "PUT"} and str(meta["path"]).startswith("/api/v1/")
        assert isinstance(meta["status"], int) and isinstance(meta["duration_ms"], int)
    statuses = Counter(e["metadata"]["status"] // 100 for e in completed)  # type: ignore[index]
    assert statuses[2] > statuses[4] > 0 and statuses[5] > 0


def test_a_trace_id_follows_one_request_through_several_services() -> None:
    events = quiet(seed=11).batch(20_000)
    by_trace: dict[object, list[dict[str, object]]] = defaultdict(list)
    for event in events:
        if "trace_id" in event:
            by_trace[event["trace_id"]].append(event)
    flows = [lines for lines in by_trace.values() if len({e["service"] for e in lines}) >= 4]
    assert len(flows) > 100
    checkout = [
        lines for lines in flows
        if {"auth-service", "order-service", "payment-service"} <= {e["service"] for e in lines}
    ]
    assert checkout
    for lines in flows:
        assert len({e["request_id"] for e in lines}) == 1
        if lines[0]["service"] == "api-gateway" and lines[-1]["service"] == "api-gateway":
            assert lines[0]["span_id"] == lines[-1]["span_id"]
    # Requests are concurrent: their lines interleave rather than arriving one block at a time.
    switches = sum(a.get("trace_id") != b.get("trace_id") for a, b in itertools.pairwise(events))
    assert switches > 0.8 * len(events)


def test_error_spike_makes_the_target_service_mostly_errors() -> None:
    gen = quiet(seed=21)
    baseline = [e for e in gen.batch(5_000) if e["service"] == "payment-service"]
    gen.start_incident("error_spike", "payment-service", duration_events=3_000)
    assert gen.incidents_started == 1
    during = [e for e in gen.batch(3_000) if e["service"] == "payment-service"]
    after = [e for e in gen.batch(10_000) if e["service"] == "payment-service"]

    def error_share(events: list[dict[str, object]]) -> float:
        return sum(level_of(e) >= Level.ERROR for e in events) / len(events)

    assert len(during) > 100
    assert error_share(baseline) < 0.2
    assert error_share(during) > 0.5
    assert error_share(after) < 0.2
    signature = sum("payment provider timeout after 30000ms" in str(e["message"]) for e in during)
    assert signature > len(during) / 3


def test_error_spike_surfaces_as_gateway_5xx() -> None:
    gen = quiet(seed=22)
    gen.start_incident("error_spike", "payment-service", duration_events=5_000)
    events = gen.batch(5_000)
    failed = [e for e in events if "upstream payment-service returned" in str(e["message"])]
    assert failed and all(e["metadata"]["status"] >= 500 for e in failed)  # type: ignore[index]


def test_latency_storm_slows_gateway_responses() -> None:
    gen = quiet(seed=31)
    gen.start_incident("latency_storm", duration_events=4_000)  # the gateway by default
    during = [e for e in gen.batch(4_000) if e["service"] == "api-gateway" and "status" in e["metadata"]]  # type: ignore[operator]
    after = [e for e in gen.batch(6_000) if e["service"] == "api-gateway" and "status" in e["metadata"]]  # type: ignore[operator]
    slow = [e for e in during if str(e["message"]).startswith("slow response")]
    assert len(slow) > len(during) / 2
    assert all(level_of(e) == Level.WARN and e["metadata"]["duration_ms"] >= 1200 for e in slow)  # type: ignore[index]
    assert not any(str(e["message"]).startswith("slow response") for e in after)


def test_random_incidents_follow_the_probability() -> None:
    always = LogGenerator(GeneratorConfig(seed=1, start_us=START_US, incident_probability=1.0))
    for _ in range(5):
        always.batch(10)
    assert always.incidents_started == 5
    never = quiet()
    for _ in range(50):
        never.batch(10)
    assert never.incidents_started == 0


def test_start_incident_rejects_bad_arguments() -> None:
    gen = quiet()
    with pytest.raises(ValueError):
        gen.start_incident("meteor_strike")
    with pytest.raises(ValueError):
        gen.start_incident("error_spike", "no-such-service")
    with pytest.raises(ValueError):
        gen.start_incident("error_spike", "auth-service", duration_events=0)
    assert gen.incidents_started == 0


@pytest.mark.parametrize(
    "config",
    [{"services": ()}, {"rate": 0.0}, {"incident_probability": 1.5}],
)
def test_config_validation(config: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(**config)  # type: ignore[arg-type]


def test_simulated_timestamps_are_monotonic_and_spaced_by_rate() -> None:
    gen = quiet(rate=1000.0)
    stamps = [to_us(e["timestamp"]) for _ in range(5) for e in gen.batch(2_000)]
    assert stamps[0] == START_US
    assert stamps == [START_US + i * 1000 for i in range(10_000)]  # 1000/s -> 1 ms apart, across batches


def test_fractional_spacing_and_a_day_boundary() -> None:
    # 3 events per second starting 2 s before midnight: 333333/333334 us apart, crossing the day.
    midnight = int(datetime(2024, 2, 29, tzinfo=UTC).timestamp()) * 1_000_000
    gen = quiet(start_us=midnight - 2_000_000, rate=3.0)
    events = gen.batch(7) + gen.batch(5)
    stamps = [to_us(e["timestamp"]) for e in events]
    assert all(b - a in (333_333, 333_334) for a, b in itertools.pairwise(stamps))
    assert stamps[-1] - stamps[0] == pytest.approx(11 / 3 * 1_000_000, abs=1)
    assert events[0]["timestamp"] == "2024-02-28T23:59:58.000000Z"
    assert events[6]["timestamp"] == "2024-02-29T00:00:00.000000Z"


def test_a_day_of_simulated_time() -> None:
    gen = quiet(rate=0.5)  # 43,200 events span 24 h
    events = gen.batch(43_200)
    span = to_us(events[-1]["timestamp"]) - to_us(events[0]["timestamp"])
    assert span == 24 * 3600 * 1_000_000 - 2_000_000


def test_wall_clock_timestamps_are_recent_and_monotonic() -> None:
    gen = LogGenerator(GeneratorConfig(seed=3, rate=1000.0, incident_probability=0.0))
    before = time.time_ns() // 1000
    stamps = [to_us(e["timestamp"]) for _ in range(3) for e in gen.batch(500)]
    after = time.time_ns() // 1000
    assert stamps == sorted(stamps)
    assert before - 2_000_000 <= stamps[0] and stamps[-1] <= after


def test_custom_services_use_generic_lines() -> None:
    custom = ("billing", "ledger", "background")  # "background" must not clash with internal names
    gen = LogGenerator(GeneratorConfig(services=custom, seed=2, start_us=START_US))
    events = gen.batch(2_000)
    assert {e["service"] for e in events} == set(custom)
    assert {e["service"] for e in events if "trace_id" in e} == set(custom)
    gen.start_incident("error_spike", "ledger", duration_events=1_000)
    spike = [e for e in gen.batch(1_000) if e["service"] == "ledger"]
    assert sum(level_of(e) >= Level.ERROR for e in spike) / len(spike) > 0.5
    pair = ("api-gateway", "payment-service")
    subset = LogGenerator(GeneratorConfig(services=pair, seed=2, start_us=START_US))
    assert {e["service"] for e in subset.batch(2_000)} == set(pair)


def test_batch_of_zero_and_negative() -> None:
    gen = quiet()
    assert gen.batch(0) == []
    with pytest.raises(ValueError):
        gen.batch(-1)
