"""The alerting API: rule CRUD with ownership, validation that names the field, SSRF at save time,
the dry-run test, triggered-alert listing, acknowledge/resolve transitions, audit of deletions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from logflow.alerting.engine import AlertEngine
from logflow.auth.users import create_user
from logflow.db.models import AuditEvent, utcnow
from logflow.db.session import make_session_factory, session_scope
from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow
from tests.integration.alert_receivers import ensure_alert_routes

RULES = "/api/v1/alerts/rules"
TRIGGERED = "/api/v1/alerts/triggered"
WEBHOOK = {"url": "http://127.0.0.1:9/services/T0/B0/SECRETPATH", "secret": "hmac-key"}


@pytest.fixture
def flow(make_settings: Callable[..., Settings]) -> Iterator[LogFlow]:
    running = start_logflow(make_settings(webhook_allowed_hosts="127.0.0.1", webhook_retries=0))
    ensure_alert_routes(running.client.app)
    try:
        yield running
    finally:
        stop_logflow(running)


def user(flow: LogFlow, name: str) -> TestClient:
    with session_scope(flow.auth.sessions) as session:
        create_user(session, username=name, email=f"{name}@example.com", password=f"{name}-password-123")
    return flow.client_as(name)


def body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "High Error Rate",
        "condition": "greater_than",
        "threshold": 5,
        "levels": ["ERROR"],
        "notification_channel": "console",
        **fields,
    }


def test_create_read_update_delete_with_the_seed_fields(flow: LogFlow) -> None:
    created = flow.admin.post(
        RULES,
        json=body(
            description="d",
            query='"connection reset"',
            time_window=10,
            services=["api"],
            group_by="service",
            repeat_interval=30,
        ),
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["owner_id"] is not None and rule["trigger_count"] == 0 and rule["last_triggered"] is None
    assert rule["created_at"] and rule["updated_at"] and rule["is_active"] is True
    assert (rule["query"], rule["time_window"], rule["group_by"], rule["repeat_interval"]) == (
        '"connection reset"',
        10,
        "service",
        30,
    )
    assert flow.client.get(f"{RULES}/{rule['id']}").json() == rule  # public read (development)
    listing = flow.client.get(RULES).json()
    assert listing["total"] == 1 and listing["rules"] == [rule]

    updated = flow.admin.put(
        f"{RULES}/{rule['id']}", json={"threshold": 10, "is_active": False, "group_by": None}
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["threshold"], updated.json()["is_active"], updated.json()["group_by"]) == (
        10,
        False,
        None,
    )
    assert updated.json()["query"] == '"connection reset"'  # untouched fields stay
    assert flow.client.get(RULES, params={"is_active": False}).json()["total"] == 1
    assert flow.client.get(RULES, params={"is_active": True}).json()["total"] == 0

    assert flow.admin.delete(f"{RULES}/{rule['id']}").status_code == 204
    assert flow.client.get(f"{RULES}/{rule['id']}").status_code == 404
    assert flow.admin.delete(f"{RULES}/{rule['id']}").status_code == 404
    with make_session_factory(flow.runtime.database)() as session:
        event = session.query(AuditEvent).filter_by(action="rule_deleted").one()
    assert event.target == f"alert_rule:{rule['id']}" and event.detail["name"] == "High Error Rate"


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"condition": "above"}, "condition"),
        ({"notification_channel": "pager"}, "notification_channel"),
        ({"time_window": 0}, "time_window"),
        ({"time_window": 2000}, "time_window"),
        ({"notification_channel": "webhook"}, "notification_config.url"),
        ({"notification_channel": "slack", "notification_config": {}}, "notification_config.url"),
        (
            {"notification_channel": "email", "notification_config": {"to": ["ops@"]}},
            "notification_config.to",
        ),
        ({"levels": ["NOPE"]}, "levels"),
        ({"threshold": None}, "threshold"),
    ],
)
def test_invalid_rules_are_422_naming_the_field(flow: LogFlow, fields: dict[str, Any], named: str) -> None:
    response = flow.admin.post(RULES, json=body(**fields))
    assert response.status_code == 422
    assert response.json()["detail"].startswith(named), response.json()
    assert flow.client.get(RULES).json()["total"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]:8080/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://[::ffff:10.0.0.1]/",  # 127.0.0.1 itself is allowed
        "file:///etc/passwd",
        "http://127.0.0.2/",
    ],
)
def test_ssrf_targets_are_refused_when_saved(flow: LogFlow, url: str) -> None:
    for channel in ("webhook", "slack"):
        response = flow.admin.post(
            RULES, json=body(notification_channel=channel, notification_config={"url": url})
        )
        assert response.status_code == 422, (channel, url)
        assert response.json()["detail"].startswith("notification_config.url: ")
        assert response.json()["errors"][0]["loc"] == ["body", "notification_config", "url"]


def test_ssrf_is_checked_on_update_too(flow: LogFlow) -> None:
    rule = flow.admin.post(
        RULES, json=body(notification_channel="webhook", notification_config=WEBHOOK)
    ).json()
    response = flow.admin.put(
        f"{RULES}/{rule['id']}", json={"notification_config": {"url": "http://10.0.0.1/"}}
    )
    assert response.status_code == 422 and "private" in response.json()["detail"]


def test_ownership_and_authentication(flow: LogFlow) -> None:
    alice, bob = user(flow, "alice"), user(flow, "bob")
    assert flow.client.post(RULES, json=body()).status_code == 401
    rule = alice.post(RULES, json=body(notification_channel="webhook", notification_config=WEBHOOK)).json()
    assert bob.put(f"{RULES}/{rule['id']}", json={"threshold": 1}).status_code == 403
    assert bob.delete(f"{RULES}/{rule['id']}").status_code == 403
    assert flow.client.delete(f"{RULES}/{rule['id']}").status_code == 401
    assert alice.put(f"{RULES}/{rule['id']}", json={"threshold": 1}).status_code == 200
    assert flow.admin.put(f"{RULES}/{rule['id']}", json={"threshold": 2}).status_code == 200
    # Secrets never show; the URL's path only to the owner and admins.
    assert alice.get(f"{RULES}/{rule['id']}").json()["notification_config"] == {
        "url": WEBHOOK["url"],
        "secret": "********",
    }
    assert (
        bob.get(f"{RULES}/{rule['id']}").json()["notification_config"]["url"] == "http://127.0.0.1:9/********"
    )
    assert flow.client.get(RULES).json()["rules"][0]["notification_config"]["url"].endswith("/********")
    # PUTting back what GET showed keeps the stored secret.
    shown = alice.get(f"{RULES}/{rule['id']}").json()["notification_config"]
    assert (
        alice.put(f"{RULES}/{rule['id']}", json={"notification_config": shown, "name": "renamed"}).status_code
        == 200
    )
    with make_session_factory(flow.runtime.database)() as session:
        from logflow.db.models import AlertRule

        stored = session.get(AlertRule, rule["id"])
        assert stored is not None and stored.notification_config == WEBHOOK and stored.name == "renamed"
    assert bob.delete(f"{RULES}/{rule['id']}").status_code == 403
    assert alice.delete(f"{RULES}/{rule['id']}").status_code == 204


def test_the_rule_test_endpoint_evaluates_without_notifying(flow: LogFlow) -> None:
    now_us = int(utcnow().timestamp() * 1_000_000)
    events = [
        {"timestamp": now_us - i * 1000, "service": svc, "level": "ERROR", "message": f"db timeout {i}"}
        for svc, n in (("orders", 8), ("users", 2))
        for i in range(n)
    ]
    assert flow.ingest(events).status_code == 202
    flow.settle()
    rule = flow.admin.post(RULES, json=body(query="timeout", group_by="service")).json()
    result = flow.admin.post(f"{RULES}/{rule['id']}/test")
    assert result.status_code == 200, result.text
    answer = result.json()
    assert (answer["value"], answer["would_fire"], answer["notified"]) == (8, True, False)
    assert answer["groups"] == [
        {"group": "orders", "value": 8, "would_fire": True},
        {"group": "users", "value": 2, "would_fire": False},
    ]
    assert len(answer["sample_logs"]) == 5 and all(s["service"] == "orders" for s in answer["sample_logs"])
    assert flow.client.get(answer["search"]["url"]).json()["total"] == 8
    assert flow.client.get(TRIGGERED).json()["total"] == 0  # nothing fired, nothing stored
    dry = flow.admin.post(f"{RULES}/test", json=body(query="timeout", threshold=100)).json()
    assert (dry["rule_id"], dry["value"], dry["would_fire"]) == (None, 10, False)
    assert flow.client.post(f"{RULES}/{rule['id']}/test").status_code == 401
    assert flow.admin.post(f"{RULES}/999/test").status_code == 404


def test_triggered_alerts_listing_transitions_and_pagination(flow: LogFlow) -> None:
    now_us = int(utcnow().timestamp() * 1_000_000)
    events = [
        {"timestamp": now_us - i * 1000, "service": f"svc-{i % 3}", "level": "ERROR", "message": "boom"}
        for i in range(30)
    ]
    assert flow.ingest(events).status_code == 202
    flow.settle()
    rule = flow.admin.post(RULES, json=body(group_by="service")).json()
    other = flow.admin.post(RULES, json=body(name="other", threshold=1000)).json()
    engine = AlertEngine(flow.runtime.store, flow.runtime.database, flow.runtime.settings)
    try:
        engine.tick(utcnow())
    finally:
        engine.close()
    page = flow.client.get(TRIGGERED, params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["alerts"]) == 2 and page["limit"] == 2
    rest = flow.client.get(TRIGGERED, params={"limit": 2, "offset": 2}).json()["alerts"]
    ids = {a["id"] for a in page["alerts"]} | {a["id"] for a in rest}
    assert len(ids) == 3
    assert flow.client.get(TRIGGERED, params={"rule_id": other["id"]}).json()["total"] == 0
    assert flow.client.get(TRIGGERED, params={"group": "svc-1"}).json()["alerts"][0]["group"] == "svc-1"
    later = (utcnow() + timedelta(minutes=1)).isoformat()
    assert flow.client.get(TRIGGERED, params={"start_time": later}).json()["total"] == 0
    assert flow.client.get(TRIGGERED, params={"end_time": later}).json()["total"] == 3
    assert flow.client.get(TRIGGERED, params={"status": "bogus"}).status_code == 422

    first, second = sorted(ids)[:2]
    assert flow.client.post(f"{TRIGGERED}/{first}/acknowledge").status_code == 401
    acked = flow.admin.post(f"{TRIGGERED}/{first}/acknowledge")  # no body at all
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_at"] and acked.json()["acknowledged_by"] is not None
    assert flow.admin.post(f"{TRIGGERED}/{first}/acknowledge").status_code == 409
    resolved = flow.admin.post(f"{TRIGGERED}/{first}/resolve", json={"notes": "restarted the pool"})
    assert resolved.json()["status"] == "resolved" and resolved.json()["notes"] == "restarted the pool"
    assert flow.admin.post(f"{TRIGGERED}/{first}/resolve").status_code == 409
    assert flow.admin.post(f"{TRIGGERED}/{first}/acknowledge").status_code == 409
    assert (
        flow.admin.post(f"{TRIGGERED}/{second}/resolve").json()["status"] == "resolved"
    )  # active → resolved
    assert flow.admin.post(f"{TRIGGERED}/424242/resolve").status_code == 404
    assert flow.client.get(f"{TRIGGERED}/424242").status_code == 404
    counts = {
        s: flow.client.get(TRIGGERED, params={"status": s}).json()["total"]
        for s in ("active", "acknowledged", "resolved", "open")
    }
    assert counts == {"active": 1, "acknowledged": 0, "resolved": 2, "open": 1}
    detail = flow.client.get(f"{TRIGGERED}/{first}").json()
    assert [n["kind"] for n in detail["notifications"]] == ["firing", "resolved"]
    assert flow.client.get(RULES + f"/{rule['id']}").json()["trigger_count"] == 3
