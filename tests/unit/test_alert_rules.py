"""Rule validation, conditions, redaction, and what each channel's message says."""

from __future__ import annotations

from typing import Any

import pytest

from logflow.alerting import payloads
from logflow.alerting.email import build_message
from logflow.alerting.notifiers import sign
from logflow.alerting.rules import (
    REDACTED,
    RuleInvalid,
    compare,
    keep_redacted,
    redact_config,
    validate_rule,
)

SEED_EXAMPLE = {
    "name": "Critical Error Spike",
    "description": "Alert when ERROR logs exceed 50 in 5 minutes",
    "condition": "greater_than",
    "threshold": 50,
    "time_window": 5,
    "levels": ["ERROR"],
    "services": ["payment-service", "auth-service"],
    "notification_channel": "webhook",
    "notification_config": {"url": "https://hooks.example.com/services/T0/B0/XYZ"},
    "is_active": True,
}


def _invalid(data: dict[str, Any]) -> RuleInvalid:
    with pytest.raises(RuleInvalid) as info:
        validate_rule(data)
    return info.value


def test_the_seed_example_is_valid_and_defaults_apply() -> None:
    spec = validate_rule(SEED_EXAMPLE)
    assert spec.levels == ["ERROR"] and spec.group_by is None and spec.repeat_interval is None
    minimal = validate_rule({"name": "x", "threshold": 100, "levels": ["error", "err", "fatal"]})
    assert (minimal.condition, minimal.time_window, minimal.notification_channel) == (
        "greater_than",
        5,
        "console",
    )
    assert minimal.levels == ["ERROR", "CRITICAL"]  # aliases canonicalised, duplicates dropped


@pytest.mark.parametrize(
    "change, field",
    [
        ({"condition": "above"}, "condition"),
        ({"notification_channel": "pager"}, "notification_channel"),
        ({"time_window": 0}, "time_window"),
        ({"time_window": 1441}, "time_window"),
        ({"threshold": -1}, "threshold"),
        ({"levels": ["LOUD"]}, "levels"),
        ({"group_by": "host"}, "group_by"),
        ({"repeat_interval": 0}, "repeat_interval"),
        ({"name": "a\nb"}, "name"),
        ({"notification_config": {}}, "notification_config.url"),
        ({"notification_config": {"url": "https://x.example", "URL": "typo"}}, "notification_config.URL"),
        (
            {"notification_config": {"url": "https://x.example", "headers": {"Host": "evil"}}},
            "notification_config.headers",
        ),
        (
            {"notification_channel": "email", "notification_config": {"to": ["not-an-address"]}},
            "notification_config.to",
        ),
        (
            {"notification_channel": "email", "notification_config": {"to": "ops@example.com, bad@"}},
            "notification_config.to",
        ),
        ({"notification_channel": "email", "notification_config": {}}, "notification_config.to"),
        ({"notification_channel": "slack", "notification_config": {"channel": "#x"}}, "notification_config"),
        ({"notification_channel": "console", "notification_config": {"url": "x"}}, "notification_config.url"),
    ],
)
def test_invalid_rules_name_the_field(change: dict[str, Any], field: str) -> None:
    error = _invalid({**SEED_EXAMPLE, **change})
    assert error.detail.startswith(f"{field}"), error.detail
    assert error.errors[0]["loc"][0] == "body"


def test_email_to_accepts_a_comma_separated_string() -> None:
    spec = validate_rule(
        {
            **SEED_EXAMPLE,
            "notification_channel": "email",
            "notification_config": {"to": "ops@example.com, oncall@example.org"},
        }
    )
    assert spec.notification_config["to"] == ["ops@example.com", "oncall@example.org"]


@pytest.mark.parametrize(
    "condition, value, fires",
    [
        ("greater_than", 51, True),
        ("greater_than", 50, False),
        ("less_than", 49, True),
        ("less_than", 50, False),
        ("equals", 50, True),
        ("equals", 51, False),
        ("greater_than_or_equal", 50, True),
        ("greater_than_or_equal", 49, False),
        ("less_than_or_equal", 50, True),
        ("less_than_or_equal", 51, False),
    ],
)
def test_the_five_conditions(condition: str, value: int, fires: bool) -> None:
    assert compare(condition, value, 50) is fires


def test_secrets_are_redacted_and_survive_a_put_of_the_redacted_form() -> None:
    config = {
        "url": "https://hooks.example.com/services/T0/B0/XYZ",
        "secret": "s3cr3t",
        "headers": {"Authorization": "Bearer abc"},
    }
    owner = redact_config("webhook", config, full=True)
    assert owner == {"url": config["url"], "secret": REDACTED, "headers": {"Authorization": REDACTED}}
    public = redact_config("webhook", config, full=False)
    assert public["url"] == f"https://hooks.example.com/{REDACTED}"
    assert keep_redacted(public, config) == config
    assert keep_redacted({**owner, "secret": "new"}, config)["secret"] == "new"


def _payload(kind: str = "firing", **alert: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "kind": kind,
        "seq": 0,
        "status": "firing",
        "value": 812,
        "threshold": 50,
        "rule": {
            "id": 7,
            "name": "Errors <b>spike</b>",
            "description": "desc",
            "query": "timeout",
            "condition": "greater_than",
            "threshold": 50,
            "time_window": 5,
            "levels": ["ERROR"],
            "services": [],
            "group_by": "service",
            "repeat_interval": None,
            "channel": "email",
        },
        "alert": {
            "id": 3,
            "group": "payment-service",
            "status": "active",
            "triggered_at": "2026-01-01T00:00:00Z",
            "value": 812,
            "threshold": 50,
            "resolved_at": None,
            **alert,
        },
        "samples": [
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "level": "ERROR",
                "service": "payment-service",
                "message": "<script>alert(1)</script> provider timeout",
            }
        ],
        "search": {"url": "http://lf/api/v1/logs/search?query=timeout&level=ERROR"},
    }


def test_summary_says_what_fired_and_why() -> None:
    assert payloads.summary(_payload()) == (
        "FIRING: Errors <b>spike</b> [service=payment-service]: "
        "812 matching events in 5 min (condition: > 50)"
    )
    resolved = payloads.summary({**_payload("resolved"), "value": 3, "resolution": "condition_cleared"})
    assert resolved.startswith(
        "RESOLVED: Errors <b>spike</b> [service=payment-service]: condition cleared; 3 "
    )
    assert payloads.summary({**_payload("reminder")}).startswith("REMINDER: ")


def test_email_has_text_and_escaped_html_parts() -> None:
    msg = build_message(
        _payload(), {"to": ["ops@example.com"], "cc": ["b@example.com"]}, "lf@example.com", "k-1"
    )
    assert msg["Message-ID"] == "<k-1@logflow>" and msg["Cc"] == "b@example.com"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "<script>alert(1)</script> provider timeout" in text.get_content()  # type: ignore[attr-defined]
    html_body = html.get_content()  # type: ignore[attr-defined]
    assert "<script>" not in html_body and "&lt;script&gt;" in html_body and "&lt;b&gt;spike" in html_body
    assert "http://lf/api/v1/logs/search?query=timeout&amp;level=ERROR" in html_body


def test_subject_cannot_carry_header_injection() -> None:
    payload = _payload()
    payload["rule"]["name"] = "x\r\nBcc: victim@example.com"
    assert "\n" not in payloads.email_subject(payload) and "\r" not in payloads.email_subject(payload)


def test_slack_message_escapes_control_characters() -> None:
    message = payloads.slack_message(_payload())
    assert message["text"].startswith("FIRING: Errors &lt;b&gt;spike&lt;/b&gt;")
    assert any("&lt;script&gt;" in str(block) for block in message["blocks"])


def test_signature_covers_timestamp_and_body() -> None:
    assert sign("k", "1700000000", b"{}") != sign("k", "1700000001", b"{}")
    assert sign("k", "1", b"{}").startswith("sha256=") and len(sign("k", "1", b"{}")) == 7 + 64
