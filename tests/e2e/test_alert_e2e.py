"""End to end: generated traffic, an error spike, real notifications, and the alert's whole life.

LogFlow runs embedded (API, processor, and the alert engine loop as ``logflow serve`` runs it:
``run_engine`` in a thread, every second). A real HTTP receiver and a real SMTP server
(aiosmtpd) receive what the engine sends. Then a real ``logflow alerting`` process is killed
with SIGKILL mid-incident and replaced, and the incident ends with exactly one "resolved" notice
per channel. Takes a little over a minute: the smallest window is one minute, and the alert
resolves only when the spike has left it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logflow.alerting import run_engine
from logflow.generator import GeneratorConfig, LogGenerator
from logflow.settings import Settings
from tests.conftest import LogFlow, start_logflow, stop_logflow
from tests.integration.alert_receivers import (
    HttpReceiver,
    SmtpReceiver,
    ensure_alert_routes,
    verify_signature,
)
from tests.integration.test_alert_distributed import AlertingProcess

pytestmark = pytest.mark.slow
INTERVAL_S = 1.0
SERVICE = "payment-service"


def _rules(flow: LogFlow, hook: HttpReceiver) -> None:
    common: dict[str, Any] = {
        "description": "payment errors above normal",
        "condition": "greater_than",
        "threshold": 40,
        "time_window": 1,
        "levels": ["ERROR", "CRITICAL"],
        "services": [SERVICE],
    }
    for extra in (
        {
            "name": "Payment errors (webhook)",
            "notification_channel": "webhook",
            "notification_config": {"url": f"{hook.url}/alerts", "secret": "e2e-secret"},
        },
        {
            "name": "Payment errors (email)",
            "notification_channel": "email",
            "notification_config": {"to": ["oncall@example.com"]},
        },
    ):
        response = flow.admin.post("/api/v1/alerts/rules", json={**common, **extra})
        assert response.status_code == 201, response.text


def _ingest(flow: LogFlow, events: list[dict[str, object]]) -> None:
    assert flow.ingest(events).status_code == 202
    flow.settle()


def test_error_spike_to_real_notifications_through_restart_and_auto_resolve(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    hook, smtp = HttpReceiver(), SmtpReceiver()
    settings = make_settings(
        alert_interval_s=INTERVAL_S,
        alert_lease_s=3,
        webhook_allowed_hosts="127.0.0.1",
        webhook_retries=1,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="logflow@example.com",
    )
    flow = start_logflow(settings)
    ensure_alert_routes(flow.client.app)
    stop = threading.Event()
    engine = threading.Thread(target=run_engine, args=(flow.runtime, stop), daemon=True)
    process: AlertingProcess | None = None
    try:
        _rules(flow, hook)
        engine.start()
        generator = LogGenerator(GeneratorConfig(seed=42, incident_probability=0.0))
        _ingest(flow, generator.batch(1000))  # normal traffic: a few payment errors, under the threshold
        time.sleep(2.5 * INTERVAL_S)
        assert hook.requests == [] and smtp.mails == []

        generator.start_incident("error_spike", SERVICE, duration_events=1500)
        _ingest(flow, generator.batch(1500))
        visible = time.monotonic()  # the spike is searchable from here on
        (fired,) = hook.wait_for(1, timeout=10)
        assert fired.at - visible <= 2 * INTERVAL_S, f"fired {fired.at - visible:.2f}s after the spike"
        body = fired.json()
        assert verify_signature(fired, "e2e-secret") and body["kind"] == "firing" and body["value"] > 40
        assert body["samples"] and all(s["service"] == SERVICE for s in body["samples"])
        assert all(s["level"] in ("ERROR", "CRITICAL") for s in body["samples"])
        (mail,) = smtp.wait_for(1, timeout=10)
        assert mail.rcpt_tos == ["oncall@example.com"]
        assert "FIRING: Payment errors (email)" in str(mail.message["Subject"])
        assert body["samples"][0]["message"][:40] in mail.part("plain")
        assert "<table>" in mail.part("html") and "Payment errors (email)" in mail.part("html")

        # The alert carries what fired it; acknowledging it is recorded.
        alerts = flow.client.get("/api/v1/alerts/triggered", params={"status": "active"}).json()["alerts"]
        assert len(alerts) == 2 and all(a["sample_logs"] and a["search"]["url"] for a in alerts)
        webhook_alert = next(a for a in alerts if a["rule_name"].endswith("(webhook)"))
        ack = flow.admin.post(
            f"/api/v1/alerts/triggered/{webhook_alert['id']}/acknowledge", json={"notes": "mine"}
        )
        assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
        detail = flow.client.get(f"/api/v1/alerts/triggered/{webhook_alert['id']}").json()
        assert [(d["channel"], d["kind"], d["status"]) for d in detail["deliveries"]] == [
            ("webhook", "firing", "sent")
        ]

        # Restart mid-incident: the in-process engine stops, a real `logflow alerting` takes over
        # and is killed with SIGKILL, then another one takes over from it.
        stop.set()
        engine.join(timeout=30)
        process = AlertingProcess(settings, tmp_path / "alerting-1.log")
        time.sleep(4 * INTERVAL_S)
        process.signal(signal.SIGKILL)
        process.close()
        process = AlertingProcess(settings, tmp_path / "alerting-2.log")
        time.sleep(2 * INTERVAL_S)
        assert len(hook.requests) == 1 and len(smtp.mails) == 1  # nothing repeated

        # The spike leaves the one-minute window: both alerts resolve by themselves, once.
        resolved = hook.wait_for(2, timeout=90)[1]
        assert resolved.json()["kind"] == "resolved" and verify_signature(resolved, "e2e-secret")
        assert "RESOLVED" in str(smtp.wait_for(2, timeout=30)[1].message["Subject"])
        time.sleep(3 * INTERVAL_S)
        assert len(hook.requests) == 2 and len(smtp.mails) == 2
        final = flow.client.get("/api/v1/alerts/triggered").json()["alerts"]
        assert sorted(a["status"] for a in final) == ["resolved", "resolved"]
        assert next(a for a in final if a["id"] == webhook_alert["id"])["acknowledged_at"] is not None
    finally:
        stop.set()
        if process is not None:
            process.close()
        engine.join(timeout=30)
        stop_logflow(flow)
        hook.close()
        smtp.close()
