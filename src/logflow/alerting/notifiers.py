"""Channel senders: console, webhook and Slack (e-mail lives in ``alerting.email``).

Each sender makes one or more attempts, reports every attempt through ``SendContext.record``
(the engine stores it as a ``Delivery`` row, visible on the alert) and either returns (sent)
or raises ``SendFailed``. ``permanent`` failures (a refused URL, a 4xx, bad configuration)
are not retried later; transient ones are, by the engine's outbox with backoff.

Within one send, transient errors are retried with exponential backoff and jitter, honouring
``Retry-After`` up to a cap, and never past ``deadline``: after the deadline the engine's claim
on the notification may have expired and another engine may be sending it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from logflow import __version__
from logflow.alerting import payloads
from logflow.alerting.http import post_json
from logflow.alerting.ssrf import Allowlist, Unresolvable, UnsafeURL

log = logging.getLogger("logflow.alerts")
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 30.0
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one channel: ``status`` is ``sent`` or ``failed``."""

    status: str
    error: str | None
    duration_ms: float


class SendFailed(Exception):
    """The notification did not get through; ``permanent`` means retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Transient(Exception):
    """A failure worth retrying (timeouts, connection errors, 5xx/429, SMTP 4xx)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class SendContext:
    """Everything a sender needs besides the payload and the rule's channel configuration."""

    allowlist: Allowlist
    timeout_s: float
    retries: int
    deadline: float  # time.monotonic() after which no new attempt may start
    idempotency_key: str
    record: Callable[[Attempt], None] = field(default=lambda attempt: None)
    smtp: Any = None  # logflow.settings.Settings for the e-mail sender
    tls: ssl.SSLContext | None = None  # for https targets (LOGFLOW_WEBHOOK_CA_FILE)
    sleep: Callable[[float], None] = time.sleep


def with_retries(ctx: SendContext, retries: int, attempt: Callable[[], None]) -> None:
    """Run ``attempt`` until it succeeds, fails permanently, runs out of tries or of time."""
    last = "no attempt made"
    for number in range(retries + 1):
        if time.monotonic() >= ctx.deadline:
            raise SendFailed(f"out of time after {number} attempt(s): {last}", permanent=False)
        started = time.perf_counter()
        try:
            attempt()
        except Transient as exc:
            last = str(exc)
            ctx.record(Attempt("failed", last, (time.perf_counter() - started) * 1000))
            if number == retries:
                break
            delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**number) * (0.75 + random.random() / 2)
            if exc.retry_after_s is not None:
                delay = max(delay, min(exc.retry_after_s, RETRY_AFTER_CAP_S))
            ctx.sleep(max(0.0, min(delay, ctx.deadline - time.monotonic())))
            continue
        except SendFailed as exc:
            ctx.record(Attempt("failed", str(exc), (time.perf_counter() - started) * 1000))
            raise
        ctx.record(Attempt("sent", None, (time.perf_counter() - started) * 1000))
        return
    raise SendFailed(f"gave up after {retries + 1} attempt(s): {last}", permanent=False)


def _http_attempt(url: str, body: bytes, headers: dict[str, str], ctx: SendContext, timeout: float) -> None:
    try:
        result = post_json(url, body, headers, allow=ctx.allowlist, timeout=timeout, tls=ctx.tls)
    except Unresolvable as exc:  # DNS may come back: worth another try
        raise Transient(str(exc)) from None
    except UnsafeURL as exc:
        raise SendFailed(f"refused: {exc}", permanent=True) from None
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            raise SendFailed(f"TLS certificate rejected: {exc}", permanent=True) from None
        raise Transient(f"ConnectError: {exc}") from None
    except httpx.TimeoutException as exc:
        raise Transient(f"timeout after {timeout:g}s ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from None
    if 200 <= result.status_code < 300:
        return
    message = f"HTTP {result.status_code} from {result.url}: {result.body_preview[:200]}"
    if result.status_code in _TRANSIENT_STATUS:
        raise Transient(message, result.retry_after_s)
    raise SendFailed(message, permanent=True)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-LogFlow-Signature``: HMAC-SHA256 over ``"<timestamp>." + body``, hex, prefixed ``sha256=``.

    Signing the timestamp too lets receivers refuse replays of an old, validly signed request.
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(payload: dict[str, Any], config: dict[str, Any], ctx: SendContext) -> None:
    """POST the JSON snapshot, signed when the rule has a ``secret``."""
    body = orjson.dumps(payload)
    timeout = float(config.get("timeout") or ctx.timeout_s)
    retries = int(config["retries"]) if config.get("retries") is not None else ctx.retries

    def attempt() -> None:
        timestamp = str(int(time.time()))  # fresh per attempt: receivers may reject stale ones
        headers = {**config.get("headers", {}), "Content-Type": "application/json",
                   "User-Agent": f"LogFlow/{__version__}", "X-LogFlow-Event": payload["kind"],
                   "X-LogFlow-Delivery": ctx.idempotency_key, "X-LogFlow-Timestamp": timestamp}
        if config.get("secret"):
            headers["X-LogFlow-Signature"] = sign(str(config["secret"]), timestamp, body)
        _http_attempt(str(config["url"]), body, headers, ctx, timeout)

    with_retries(ctx, retries, attempt)


def send_slack(payload: dict[str, Any], config: dict[str, Any], ctx: SendContext) -> None:
    """POST a Slack incoming-webhook message."""
    body = orjson.dumps(payloads.slack_message(payload))
    timeout = float(config.get("timeout") or ctx.timeout_s)
    retries = int(config["retries"]) if config.get("retries") is not None else ctx.retries
    headers = {"Content-Type": "application/json", "User-Agent": f"LogFlow/{__version__}"}
    with_retries(ctx, retries, lambda: _http_attempt(str(config["url"]), body, headers, ctx, timeout))


def send_console(payload: dict[str, Any], config: dict[str, Any], ctx: SendContext) -> None:
    """One structured log line (``logflow.alerts`` logger): the summary, then the snapshot as JSON."""
    def attempt() -> None:
        record = {"event": "alert", "kind": payload["kind"], "delivery": ctx.idempotency_key,
                  "summary": payloads.summary(payload), "rule": payload["rule"], "alert": payload["alert"],
                  "search": payload.get("search", {}).get("url")}
        level = logging.INFO if payload["kind"] == "resolved" else logging.WARNING
        log.log(level, "%s", json.dumps(record, default=str, sort_keys=True))

    with_retries(ctx, 0, attempt)


def send_email(payload: dict[str, Any], config: dict[str, Any], ctx: SendContext) -> None:
    from logflow.alerting.email import send_email as smtp_send

    smtp_send(payload, config, ctx)


SENDERS: dict[str, Callable[[dict[str, Any], dict[str, Any], SendContext], None]] = {
    "console": send_console, "webhook": send_webhook, "slack": send_slack, "email": send_email,
}
