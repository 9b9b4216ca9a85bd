"""What a notification says, per channel, built from one JSON snapshot.

The engine snapshots the notification (``build_payload``) in the same transaction that changes
the alert, so a retry or a send after failover says exactly what the first attempt would have
said. Every channel renders from that snapshot: webhook (the snapshot itself), Slack (an
incoming-webhook message), e-mail (plain text and HTML) and the console line.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

PAYLOAD_VERSION = 1
SUMMARY_SAMPLES = 5
_CONDITION_SIGNS = {
    "greater_than": ">", "less_than": "<", "equals": "==",
    "greater_than_or_equal": ">=", "less_than_or_equal": "<=",
}


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def search_link(base_url: str, search: dict[str, Any]) -> str:
    """A link to the search API showing every event the alert counted."""
    params: list[tuple[str, str]] = []
    if search.get("query"):
        params.append(("query", str(search["query"])))
    params += [("service", s) for s in search.get("services", [])]
    params += [("level", lv) for lv in search.get("levels", [])]
    for key in ("start_time", "end_time"):
        if search.get(key):
            params.append((key, str(search[key])))
    return f"{base_url.rstrip('/')}/api/v1/logs/search?{urlencode(params)}"


def idempotency_key(alert_id: int, kind: str, seq: int) -> str:
    """Stable per notification: receivers can drop the rare duplicate of an at-least-once send."""
    return f"logflow-alert-{alert_id}-{kind}-{seq}"


def summary(payload: dict[str, Any]) -> str:
    """One line: what fired, for which group, with which value against which threshold."""
    rule, alert = payload["rule"], payload["alert"]
    group = f" [{rule['group_by']}={alert['group']}]" if alert.get("group") else ""
    sign = _CONDITION_SIGNS.get(rule["condition"], rule["condition"])
    measured = (f"{_num(payload['value'])} matching events in {rule['time_window']} min "
                f"(condition: {sign} {_num(rule['threshold'])})")
    if payload["kind"] == "resolved":
        how = "resolved manually" if payload.get("resolution") == "manual" else "condition cleared"
        return f"RESOLVED: {rule['name']}{group}: {how}; {measured}"
    label = "REMINDER" if payload["kind"] == "reminder" else "FIRING"
    return f"{label}: {rule['name']}{group}: {measured}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _sample_line(sample: dict[str, Any]) -> str:
    return f"{sample.get('timestamp', '')} {sample.get('level', '')} {sample.get('service', '')}: " \
           f"{str(sample.get('message', ''))[:300]}"


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: text fallback plus blocks with the essentials."""
    def esc(text: str) -> str:  # Slack mrkdwn control characters
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    rule, alert = payload["rule"], payload["alert"]
    text = esc(summary(payload))
    fields = [
        {"type": "mrkdwn", "text": f"*Value*\n{_num(payload['value'])}"},
        {"type": "mrkdwn", "text": f"*Threshold*\n{esc(rule['condition'])} {_num(rule['threshold'])}"},
        {"type": "mrkdwn", "text": f"*Window*\n{rule['time_window']} min"},
        {"type": "mrkdwn", "text": f"*Status*\n{esc(alert['status'])}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "section", "fields": fields},
    ]
    samples = payload.get("samples") or []
    if samples and payload["kind"] != "resolved":
        lines = "\n".join(esc(_sample_line(s)) for s in samples[:SUMMARY_SAMPLES])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{lines}```"}})
    link = payload.get("search", {}).get("url")
    if link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{esc(link)}|All matching logs> · alert #{alert['id']}"}]})
    return {"text": text, "blocks": blocks}


def email_subject(payload: dict[str, Any]) -> str:
    # Header injection: no control characters may reach the Subject line.
    return "".join(ch if ch.isprintable() else " " for ch in f"[LogFlow] {summary(payload)}")[:250]


def email_text(payload: dict[str, Any]) -> str:
    """The plain-text part."""
    rule, alert = payload["rule"], payload["alert"]
    lines = [
        summary(payload), "",
        f"Rule:       {rule['name']} (#{rule['id']})",
        f"Condition:  {rule['condition']} {_num(rule['threshold'])} within {rule['time_window']} min",
        f"Value:      {_num(payload['value'])}",
        f"Status:     {alert['status']}",
        f"Triggered:  {alert['triggered_at']}",
    ]
    if alert.get("group"):
        lines.append(f"Group:      {rule['group_by']}={alert['group']}")
    if alert.get("resolved_at"):
        lines.append(f"Resolved:   {alert['resolved_at']}")
    if rule.get("description"):
        lines += ["", str(rule["description"])]
    samples = payload.get("samples") or []
    if samples:
        lines += ["", "Sample events:"] + [f"  {_sample_line(s)}" for s in samples[:SUMMARY_SAMPLES]]
    link = payload.get("search", {}).get("url")
    if link:
        lines += ["", f"All matching logs: {link}"]
    return "\n".join(lines) + "\n"


def email_html(payload: dict[str, Any]) -> str:
    """The HTML part; everything from rules and logs is escaped (log lines are attacker-controlled)."""
    e = html.escape
    rule, alert = payload["rule"], payload["alert"]
    color = "#2e7d32" if payload["kind"] == "resolved" else "#c62828"
    rows = [
        ("Rule", f"{rule['name']} (#{rule['id']})"),
        ("Condition", f"{rule['condition']} {_num(rule['threshold'])} within {rule['time_window']} min"),
        ("Value", _num(payload["value"])), ("Status", alert["status"]), ("Triggered", alert["triggered_at"]),
    ]
    if alert.get("group"):
        rows.append(("Group", f"{rule['group_by']}={alert['group']}"))
    if alert.get("resolved_at"):
        rows.append(("Resolved", alert["resolved_at"]))
    table = "".join(f"<tr><th align='left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    parts = [f"<h2 style='color:{color}'>{e(summary(payload))}</h2>", f"<table>{table}</table>"]
    if rule.get("description"):
        parts.append(f"<p>{e(str(rule['description']))}</p>")
    samples = payload.get("samples") or []
    if samples:
        items = "".join(f"<li><code>{e(_sample_line(s))}</code></li>" for s in samples[:SUMMARY_SAMPLES])
        parts.append(f"<h3>Sample events</h3><ul>{items}</ul>")
    link = payload.get("search", {}).get("url")
    if link:
        parts.append(f"<p><a href=\"{e(link)}\">All matching logs</a></p>")
    return "<html><body>" + "".join(parts) + "</body></html>"
