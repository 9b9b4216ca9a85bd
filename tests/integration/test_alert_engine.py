"""The engine on a real embedded LogFlow (SQLite metadata, embedded store) with real receivers.

Rounds are driven with ``engine.tick(now)``: the store holds events stamped with the wall
clock, and ``now`` moves the evaluation window forward (a reminder after a minute, a resolve
after the window has passed) without waiting in real time. Sends are real HTTP requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from logflow.alerting.engine import AlertEngine
from logflow.db.models import AlertNotification, TriggeredAlert, utcnow
from logflow.db.session import make_session_factory
from logflow.settings import Settings
from tests.conftest import (
    LogFlow,
    distributed_overrides,
    drop_distributed_resources,
    postgres_schema,
    start_logflow,
    stop_logflow,
)
from tests.integration.alert_receivers import (
    HttpReceiver,
    Received,
    Reply,
    ensure_alert_routes,
    verify_signature,
    wait_until,
)

ALERT_SETTINGS: dict[str, Any] = {
    "webhook_allowed_hosts": "127.0.0.1",
    "alert_interval_s": 1,
    "alert_lease_s": 1.5,
    "webhook_retries": 0,
    "webhook_timeout_s": 5,
}


@pytest.fixture
def flow(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[LogFlow]:
    """Embedded unless a test asks for ``BOTH_SHAPES`` (the engine reads only the store port)."""
    shape = getattr(request, "param", "embedded")
    with ExitStack() as stack:
        overrides: dict[str, Any] = {}
        if shape == "distributed":
            # Alerts live in the metadata database: a schema of its own keeps other tests' alerts out.
            overrides = {**distributed_overrides(), "database_url": stack.enter_context(postgres_schema())}
        running = start_logflow(make_settings(**ALERT_SETTINGS, **overrides))
        ensure_alert_routes(running.client.app)
        try:
            yield running
        finally:
            stop_logflow(running)
            if shape == "distributed":
                drop_distributed_resources(running.runtime.settings, running.runtime.queue)


# The rules evaluated against OpenSearch (count, counts per group, sample logs) as well.
BOTH_SHAPES = pytest.mark.parametrize(
    "flow", ["embedded", pytest.param("distributed", marks=pytest.mark.distributed)], indirect=True
)


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def engines(flow: LogFlow) -> Iterator[Callable[..., AlertEngine]]:
    made: list[AlertEngine] = []

    def make(**kwargs: Any) -> AlertEngine:
        made.append(AlertEngine(flow.runtime.store, flow.runtime.database, flow.runtime.settings, **kwargs))
        return made[-1]

    yield make
    for engine in made:
        engine.close(grace_s=5)


def ingest(
    flow: LogFlow,
    service: str,
    level: str,
    count: int,
    message: str = "payment provider timeout",
    at: datetime | None = None,
) -> None:
    now_us = int((at or utcnow()).timestamp() * 1_000_000)
    events = [
        {"timestamp": now_us - i * 1000, "service": service, "level": level, "message": f"{message} #{i}"}
        for i in range(count)
    ]
    assert flow.ingest(events).status_code == 202
    flow.settle()


def rule(flow: LogFlow, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Error spike",
        "condition": "greater_than",
        "threshold": 5,
        "time_window": 5,
        "levels": ["ERROR"],
        "notification_channel": "console",
        **fields,
    }
    response = flow.admin.post("/api/v1/alerts/rules", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def alerts(flow: LogFlow, **params: Any) -> list[dict[str, Any]]:
    response = flow.client.get("/api/v1/alerts/triggered", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["alerts"])


def settled(flow: LogFlow) -> None:
    """Wait until no notification is pending or being sent."""
    sessions = make_session_factory(flow.runtime.database)

    def quiet() -> bool:
        with sessions() as session:
            busy = session.scalars(
                select(AlertNotification.id).where(AlertNotification.status.in_(("pending", "sending")))
            ).first()
            return busy is None

    wait_until(quiet, what="outbox to settle")


def webhook(hook: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {"notification_channel": "webhook", "notification_config": {"url": f"{hook.url}/hook", **extra}}


@BOTH_SHAPES
def test_fires_once_notifies_once_then_resolves_with_a_resolved_notice(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    created = rule(flow, query="timeout", **webhook(hook, secret="k"))
    ingest(flow, "payment-service", "ERROR", 12)
    ingest(flow, "payment-service", "INFO", 30)  # wrong level: not counted
    ingest(flow, "payment-service", "ERROR", 30, message="disk full")  # no "timeout": not counted
    engine, now = engines(), utcnow()
    assert engine.tick(now)
    (fired,) = hook.wait_for(1)
    body = fired.json()
    assert verify_signature(fired, "k") and body["kind"] == "firing" and body["value"] == 12
    assert body["rule"]["id"] == created["id"] and len(body["samples"]) == 5
    assert all("timeout" in s["message"] and s["level"] == "ERROR" for s in body["samples"])
    (alert,) = alerts(flow)
    assert (alert["status"], alert["value"], alert["log_count"], alert["threshold"]) == ("active", 12, 12, 5)
    assert alert["rule_name"] == "Error spike" and len(alert["sample_logs"]) == 5
    assert alert["search"]["query"] == "timeout" and alert["search"]["levels"] == ["ERROR"]
    # The link is a real search returning exactly the counted events.
    link = alert["search"]["url"]
    assert flow.client.get(link).json()["total"] == 12

    settled(flow)
    for later in (5, 20, 60):  # still firing: no new alert, no second notification
        assert engine.tick(now + timedelta(seconds=later))
    settled(flow)
    time.sleep(0.2)
    assert len(hook.requests) == 1 and len(alerts(flow)) == 1
    assert flow.client.get(f"/api/v1/alerts/rules/{created['id']}").json()["trigger_count"] == 1

    assert engine.tick(now + timedelta(minutes=6))  # the window has moved past the spike
    resolved = hook.wait_for(2)[1]
    assert resolved.json()["kind"] == "resolved" and resolved.json()["resolution"] == "condition_cleared"
    assert resolved.headers["x-logflow-delivery"].endswith("-resolved-0")
    (alert,) = alerts(flow)
    assert alert["status"] == "resolved" and alert["resolved_at"] and alert["resolved_by"] is None
    detail = flow.client.get(f"/api/v1/alerts/triggered/{alert['id']}").json()
    assert [(d["kind"], d["status"], d["channel"]) for d in detail["deliveries"]] == [
        ("firing", "sent", "webhook"),
        ("resolved", "sent", "webhook"),
    ]
    assert all(d["duration_ms"] is not None for d in detail["deliveries"])
    assert [n["status"] for n in detail["notifications"]] == ["sent", "sent"]


def test_reminders_follow_repeat_interval_until_acknowledged(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(flow, repeat_interval=1, **webhook(hook))
    ingest(flow, "auth-service", "ERROR", 8)
    engine, now = engines(), utcnow()
    engine.tick(now)
    hook.wait_for(1)
    settled(flow)
    engine.tick(now + timedelta(seconds=30))
    engine.tick(now + timedelta(seconds=61))
    reminder = hook.wait_for(2)[1].json()
    assert (reminder["kind"], reminder["seq"]) == ("reminder", 1)
    settled(flow)
    (alert,) = alerts(flow)
    assert alert["reminders_sent"] == 1
    ack = flow.admin.post(f"/api/v1/alerts/triggered/{alert['id']}/acknowledge", json={"notes": "on it"})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    engine.tick(now + timedelta(seconds=150))
    settled(flow)
    time.sleep(0.2)
    assert len(hook.requests) == 2  # acknowledged: no more reminders
    engine.tick(now + timedelta(minutes=7))  # but it still resolves by itself
    assert hook.wait_for(3)[2].json()["kind"] == "resolved"


@BOTH_SHAPES
def test_group_by_service_tracks_each_group(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(flow, group_by="service", **webhook(hook))
    ingest(flow, "payment-service", "ERROR", 9)
    ingest(flow, "order-service", "ERROR", 7)
    ingest(flow, "user-service", "ERROR", 2)  # below the threshold
    engines().tick(utcnow())
    bodies = sorted((r.json()["alert"]["group"], r.json()["value"]) for r in hook.wait_for(2))
    assert bodies == [("order-service", 7), ("payment-service", 9)]
    by_group = {a["group"]: a for a in alerts(flow)}
    assert set(by_group) == {"order-service", "payment-service"}
    assert all(s["service"] == "payment-service" for s in by_group["payment-service"]["sample_logs"])
    assert by_group["payment-service"]["search"]["services"] == ["payment-service"]


@BOTH_SHAPES
def test_less_than_catches_a_service_that_went_silent(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(
        flow,
        name="Heartbeat",
        condition="less_than",
        threshold=1,
        time_window=2,
        levels=[],
        group_by="service",
        **webhook(hook),
    )
    now = utcnow()
    ingest(
        flow, "billing", "INFO", 3, message="heartbeat", at=now - timedelta(minutes=3)
    )  # previous window only
    ingest(flow, "search", "INFO", 3, message="heartbeat", at=now - timedelta(seconds=10))  # still logging
    engines().tick(now)
    (silent,) = hook.wait_for(1)
    assert silent.json()["alert"]["group"] == "billing" and silent.json()["value"] == 0
    time.sleep(0.2)
    assert len(hook.requests) == 1


def test_a_failing_channel_blocks_neither_the_engine_nor_other_rules(
    flow: LogFlow, engines: Callable[..., AlertEngine]
) -> None:
    slow = HttpReceiver(delay_s=3)
    fast = HttpReceiver()
    try:
        rule(flow, name="slow", **webhook(slow))
        rule(flow, name="fast", **webhook(fast))
        ingest(flow, "api-gateway", "ERROR", 10)
        engine = engines()
        started = time.monotonic()
        engine.tick(utcnow())
        assert time.monotonic() - started < 2.0  # the round does not wait for sends
        fast.wait_for(1, timeout=2.0)
        assert time.monotonic() - started < 2.5  # nor does one rule's send wait for another's
        assert engine.dispatcher.inflight >= 1  # the slow send is still running
        slow.wait_for(1)
    finally:
        slow.close()
        fast.close()


def test_a_failed_send_is_retried_in_a_later_round_and_every_attempt_is_visible(
    flow: LogFlow, engines: Callable[..., AlertEngine]
) -> None:
    def down_then_up(number: int, _: Received) -> Reply:
        return (503, {}, b"down") if number == 0 else (200, {}, b"ok")

    hook = HttpReceiver(script=down_then_up)
    dead = HttpReceiver(script=lambda n, r: (410, {}, b"gone"))
    try:
        rule(flow, name="flaky", **webhook(hook))
        rule(flow, name="gone", **webhook(dead))
        ingest(flow, "api-gateway", "ERROR", 10)
        engine, now = engines(), utcnow()
        engine.tick(now)
        settled(flow)
        flaky, gone = sorted(alerts(flow), key=lambda a: a["rule_name"])
        detail = flow.client.get(f"/api/v1/alerts/triggered/{flaky['id']}").json()
        assert [n["status"] for n in detail["notifications"]] == ["failed"]
        assert detail["notifications"][0]["next_attempt_at"] and "503" in detail["deliveries"][0]["error"]
        engine.tick(now + timedelta(seconds=45))  # past the first round backoff (30 s)
        settled(flow)
        detail = flow.client.get(f"/api/v1/alerts/triggered/{flaky['id']}").json()
        assert [d["status"] for d in detail["deliveries"]] == ["failed", "sent"]
        assert detail["notifications"][0]["status"] == "sent" and detail["notifications"][0]["attempts"] == 2
        gone_detail = flow.client.get(f"/api/v1/alerts/triggered/{gone['id']}").json()
        assert gone_detail["notifications"][0]["status"] == "dead"  # a 410 is not worth retrying
        assert "HTTP 410" in gone_detail["notifications"][0]["last_error"] and len(dead.requests) == 1
    finally:
        hook.close()
        dead.close()


def test_a_crash_between_state_change_and_send_neither_loses_nor_repeats(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(flow, **webhook(hook))
    ingest(flow, "payment-service", "ERROR", 10)
    first, now = engines(holder="first"), utcnow()
    assert first.tick(now, dispatch=False)  # the alert and its notification are committed ...
    assert hook.requests == []  # ... and then the engine "dies" (never sends, never releases)
    second = engines(holder="second")
    assert not second.tick(now)  # the lease is still held
    wait_until(lambda: second.tick(now + timedelta(seconds=2)), timeout=5, what="lease expiry")
    assert hook.wait_for(1)[0].json()["kind"] == "firing"
    settled(flow)
    second.tick(now + timedelta(seconds=3))
    time.sleep(0.2)
    assert len(hook.requests) == 1 and len(alerts(flow)) == 1
    assert not first.tick(now + timedelta(seconds=3))  # the old leader stays fenced off


def test_a_restarted_engine_continues_the_incident(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(flow, **webhook(hook))
    ingest(flow, "payment-service", "ERROR", 10)
    first, now = engines(holder="first"), utcnow()
    first.tick(now)
    hook.wait_for(1)
    first.close()  # a clean stop releases the lease at once
    second = engines(holder="second")
    assert second.tick(now + timedelta(seconds=30))
    settled(flow)
    assert len(hook.requests) == 1  # still open: no second firing notice
    second.tick(now + timedelta(minutes=6))
    assert [r.json()["kind"] for r in hook.wait_for(2)] == ["firing", "resolved"]


def test_manual_resolve_notifies_and_a_still_firing_rule_opens_a_new_alert(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    rule(flow, **webhook(hook))
    ingest(flow, "payment-service", "ERROR", 10)
    engine, now = engines(), utcnow()
    engine.tick(now)
    hook.wait_for(1)
    (alert,) = alerts(flow)
    done = flow.admin.post(
        f"/api/v1/alerts/triggered/{alert['id']}/resolve", json={"notes": "fixed the pool"}
    )
    assert done.status_code == 200 and done.json()["notes"] == "fixed the pool"
    assert done.json()["resolved_by"] is not None
    engine.tick(now + timedelta(seconds=5))
    received = [r.json() for r in hook.wait_for(3)]
    # The resolved notice of the old alert and the firing notice of the new one are sent in
    # parallel by the worker pool, so they may arrive in either order.
    assert received[0]["kind"] == "firing"
    assert sorted(r["kind"] for r in received[1:]) == ["firing", "resolved"]
    resolved = next(r for r in received if r["kind"] == "resolved")
    assert resolved["resolution"] == "manual"
    assert [a["status"] for a in alerts(flow)] == ["active", "resolved"]


def test_deleting_a_rule_mid_incident_is_clean(
    flow: LogFlow, hook: HttpReceiver, engines: Callable[..., AlertEngine]
) -> None:
    created = rule(flow, **webhook(hook))
    ingest(flow, "payment-service", "ERROR", 10)
    engine, now = engines(), utcnow()
    engine.tick(now, dispatch=False)
    assert flow.admin.delete(f"/api/v1/alerts/rules/{created['id']}").status_code == 204
    assert engine.tick(now + timedelta(seconds=5))
    settled(flow)
    assert hook.requests == [] and alerts(flow) == []
    with make_session_factory(flow.runtime.database)() as session:
        assert session.scalars(select(TriggeredAlert)).first() is None
