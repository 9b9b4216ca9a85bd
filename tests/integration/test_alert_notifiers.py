"""Each channel against a real receiver: signed webhooks, retries, timeouts, redirects and the
SSRF guard at send time; Slack; e-mail over plain SMTP, STARTTLS with AUTH, and implicit TLS."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from logflow.alerting.notifiers import (
    Attempt,
    SendContext,
    SendFailed,
    send_console,
    send_slack,
    send_webhook,
)
from logflow.alerting.ssrf import UnsafeURL, check_url, parse_allowlist
from logflow.settings import Settings
from tests.integration.alert_receivers import (
    HttpReceiver,
    Received,
    Reply,
    SmtpReceiver,
    make_cert,
    verify_signature,
)

PAYLOAD: dict[str, Any] = {
    "version": 1,
    "kind": "firing",
    "seq": 0,
    "status": "firing",
    "value": 120,
    "threshold": 50,
    "rule": {
        "id": 1,
        "name": "Errors",
        "description": None,
        "query": None,
        "condition": "greater_than",
        "threshold": 50,
        "time_window": 5,
        "levels": ["ERROR"],
        "services": [],
        "group_by": None,
        "repeat_interval": None,
        "channel": "webhook",
    },
    "alert": {
        "id": 9,
        "group": "",
        "status": "active",
        "triggered_at": "2026-01-01T00:00:00Z",
        "value": 120,
        "threshold": 50,
        "resolved_at": None,
    },
    "samples": [{"timestamp": "2026-01-01T00:00:00Z", "level": "ERROR", "service": "api", "message": "boom"}],
    "search": {"url": "/api/v1/logs/search?level=ERROR"},
}


@pytest.fixture
def receivers() -> Iterator[Callable[..., HttpReceiver]]:
    made: list[HttpReceiver] = []

    def make(**kwargs: Any) -> HttpReceiver:
        made.append(HttpReceiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _ctx(
    allow: str = "127.0.0.1",
    *,
    retries: int = 3,
    timeout: float = 5.0,
    budget: float = 30.0,
    settings: Settings | None = None,
) -> tuple[SendContext, list[Attempt]]:
    attempts: list[Attempt] = []
    ctx = SendContext(
        allowlist=parse_allowlist(allow),
        timeout_s=timeout,
        retries=retries,
        deadline=time.monotonic() + budget,
        idempotency_key="logflow-alert-9-firing-0",
        record=attempts.append,
        smtp=settings,
    )
    return ctx, attempts


def test_webhook_delivers_the_signed_payload(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers()
    ctx, attempts = _ctx()
    send_webhook(
        PAYLOAD, {"url": f"{hook.url}/hook?x=1", "secret": "s3cret", "headers": {"X-Team": "ops"}}, ctx
    )
    (req,) = hook.wait_for(1)
    assert req.path == "/hook?x=1" and req.json() == PAYLOAD
    assert verify_signature(req, "s3cret") and not verify_signature(req, "other")
    assert req.headers["x-logflow-delivery"] == "logflow-alert-9-firing-0"
    assert req.headers["x-logflow-event"] == "firing" and req.headers["x-team"] == "ops"
    assert req.headers["host"] == f"127.0.0.1:{hook.port}"
    assert [a.status for a in attempts] == ["sent"] and attempts[0].duration_ms > 0


def test_unsigned_when_no_secret(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers()
    send_webhook(PAYLOAD, {"url": hook.url}, _ctx()[0])
    assert "x-logflow-signature" not in hook.wait_for(1)[0].headers


def test_transient_errors_are_retried_with_backoff(receivers: Callable[..., HttpReceiver]) -> None:
    def flaky(number: int, _: Received) -> Reply:
        return (503, {}, b"busy") if number < 2 else (200, {}, b"ok")

    hook = receivers(script=flaky)
    ctx, attempts = _ctx(retries=3)
    started = time.monotonic()
    send_webhook(PAYLOAD, {"url": hook.url, "secret": "k"}, ctx)
    requests = hook.wait_for(3)
    assert [a.status for a in attempts] == ["failed", "failed", "sent"]
    assert "HTTP 503" in (attempts[0].error or "")
    # Backoff 0.5 s then 1 s (±25 % jitter) between the three tries.
    assert requests[1].at - requests[0].at >= 0.35 and requests[2].at - requests[1].at >= 0.7
    assert time.monotonic() - started < 5
    assert all(verify_signature(r, "k") for r in requests)  # re-signed per attempt


def test_client_errors_are_permanent_and_not_retried(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers(script=lambda n, r: (404, {}, b"no such hook"))
    ctx, attempts = _ctx(retries=3)
    with pytest.raises(SendFailed, match="HTTP 404") as info:
        send_webhook(PAYLOAD, {"url": hook.url}, ctx)
    assert info.value.permanent and len(hook.requests) == 1 and [a.status for a in attempts] == ["failed"]


def test_a_slow_receiver_times_out_and_the_failure_is_transient(
    receivers: Callable[..., HttpReceiver],
) -> None:
    hook = receivers(delay_s=1.5)
    ctx, attempts = _ctx(retries=1, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(SendFailed) as info:
        send_webhook(PAYLOAD, {"url": hook.url}, ctx)
    assert not info.value.permanent and time.monotonic() - started < 2.5
    assert [a.status for a in attempts] == ["failed", "failed"] and "timeout" in (attempts[0].error or "")


def test_the_deadline_stops_retrying(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers(script=lambda n, r: (500, {}, b""))
    ctx, attempts = _ctx(retries=10, budget=1.0)
    with pytest.raises(SendFailed, match="out of time"):
        send_webhook(PAYLOAD, {"url": hook.url}, ctx)
    assert 1 < len(attempts) < 5


def test_redirects_are_followed_and_rechecked(receivers: Callable[..., HttpReceiver]) -> None:
    final = receivers()
    hop = receivers(script=lambda n, r: (307, {"Location": f"{final.url}/final"}, b""))
    send_webhook(PAYLOAD, {"url": hop.url, "secret": "k"}, _ctx()[0])
    (req,) = final.wait_for(1)
    assert req.path == "/final" and req.json() == PAYLOAD


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/steal",  # loopback outside the allowlist (a receiver listens there)
        "http://[::ffff:127.0.0.2]:{port}/steal",  # the same, IPv4-mapped
        "http://2130706434:{port}/steal",  # the same, as a decimal number
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/internal",  # private network
        "ftp://127.0.0.1/x",
    ],
)
def test_a_redirect_to_a_refused_target_is_not_followed(
    receivers: Callable[..., HttpReceiver], target: str
) -> None:
    victim = receivers(host="127.0.0.2")
    location = target.format(port=victim.port)
    with pytest.raises(UnsafeURL):  # the guard refuses it before anything connects
        check_url(location, parse_allowlist("127.0.0.1"))
    hook = receivers(script=lambda n, r: (302, {"Location": location}, b""))
    ctx, attempts = _ctx(retries=3)
    with pytest.raises(SendFailed, match="refused") as info:
        send_webhook(PAYLOAD, {"url": hook.url}, ctx)
    assert info.value.permanent and len(hook.requests) == 1 and [a.status for a in attempts] == ["failed"]
    time.sleep(0.1)
    assert victim.requests == []


def test_send_time_check_refuses_what_the_allowlist_no_longer_opens(
    receivers: Callable[..., HttpReceiver],
) -> None:
    hook = receivers()
    ctx, attempts = _ctx(allow="")
    with pytest.raises(SendFailed, match=r"refused.*loopback") as info:
        send_webhook(PAYLOAD, {"url": hook.url}, ctx)
    assert info.value.permanent and hook.requests == [] and attempts[0].status == "failed"


def test_allowed_host_name_keeps_its_host_header(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers()
    send_webhook(PAYLOAD, {"url": f"http://localhost:{hook.port}/h"}, _ctx(allow="localhost")[0])
    assert hook.wait_for(1)[0].headers["host"] == f"localhost:{hook.port}"


def test_slack_gets_an_incoming_webhook_message(receivers: Callable[..., HttpReceiver]) -> None:
    hook = receivers()
    send_slack(PAYLOAD, {"url": f"{hook.url}/services/T/B/X"}, _ctx()[0])
    body = hook.wait_for(1)[0].json()
    assert body["text"].startswith("FIRING: Errors: 120 matching events")
    assert body["blocks"][0]["type"] == "section" and "boom" in str(body["blocks"])


def test_console_writes_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    ctx, attempts = _ctx()
    with caplog.at_level(logging.WARNING, logger="logflow.alerts"):
        send_console(PAYLOAD, {}, ctx)
    (record,) = [r for r in caplog.records if r.name == "logflow.alerts"]
    assert (
        '"kind": "firing"' in record.getMessage()
        and '"delivery": "logflow-alert-9-firing-0"' in record.getMessage()
    )
    assert [a.status for a in attempts] == ["sent"]


# -- e-mail ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp() -> Iterator[Callable[..., SmtpReceiver]]:
    made: list[SmtpReceiver] = []

    def make(**kwargs: Any) -> SmtpReceiver:
        made.append(SmtpReceiver(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _mail_settings(make_settings: Callable[..., Settings], server: SmtpReceiver, **extra: Any) -> Settings:
    return make_settings(
        smtp_host="127.0.0.1",
        smtp_port=server.port,
        smtp_from="logflow@example.com",
        smtp_timeout_s=5,
        **extra,
    )


def test_email_over_plain_smtp_has_text_and_html(
    smtp: Callable[..., SmtpReceiver], make_settings: Callable[..., Settings]
) -> None:
    from logflow.alerting.email import send_email

    server = smtp()
    ctx, attempts = _ctx(settings=_mail_settings(make_settings, server))
    send_email(PAYLOAD, {"to": ["ops@example.com"], "cc": ["lead@example.com"]}, ctx)
    (mail,) = server.wait_for(1)
    assert mail.mail_from == "logflow@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "lead@example.com"]
    assert (
        str(mail.message["Subject"]).strip()
        == "[LogFlow] FIRING: Errors: 120 matching events in 5 min (condition: > 50)"
    )
    assert mail.message["Message-ID"] == "<logflow-alert-9-firing-0@logflow>"
    assert "boom" in mail.part("plain") and "<table>" in mail.part("html")
    assert [a.status for a in attempts] == ["sent"]


def test_email_with_starttls_and_auth(
    smtp: Callable[..., SmtpReceiver], make_settings: Callable[..., Settings], cert: tuple[Path, Path]
) -> None:
    from logflow.alerting.email import send_email

    server = smtp(cert=cert[0], key=cert[1], starttls=True, credentials=("alerts", "pw"))
    settings = _mail_settings(
        make_settings,
        server,
        smtp_starttls=True,
        smtp_username="alerts",
        smtp_password="pw",
        smtp_ca_file=str(cert[0]),
    )
    send_email(PAYLOAD, {"to": ["ops@example.com"]}, _ctx(settings=settings)[0])
    (mail,) = server.wait_for(1)
    assert mail.authenticated_as == "alerts" and "boom" in mail.part("html")

    wrong = settings.model_copy(update={"smtp_password": SecretStr("nope")})
    ctx, attempts = _ctx(settings=wrong)
    with pytest.raises(SendFailed, match="authentication") as info:
        send_email(PAYLOAD, {"to": ["ops@example.com"]}, ctx)
    assert info.value.permanent and len(attempts) == 1

    untrusted = settings.model_copy(update={"smtp_ca_file": ""})
    with pytest.raises(SendFailed, match="certificate") as info:
        send_email(PAYLOAD, {"to": ["ops@example.com"]}, _ctx(settings=untrusted)[0])
    assert info.value.permanent and len(server.mails) == 1


def test_email_over_implicit_tls(
    smtp: Callable[..., SmtpReceiver], make_settings: Callable[..., Settings], cert: tuple[Path, Path]
) -> None:
    from logflow.alerting.email import send_email

    server = smtp(cert=cert[0], key=cert[1], implicit_tls=True)
    settings = _mail_settings(make_settings, server, smtp_ssl=True, smtp_ca_file=str(cert[0]))
    send_email(PAYLOAD, {"to": ["ops@example.com"]}, _ctx(settings=settings)[0])
    assert server.wait_for(1)[0].part("plain").startswith("FIRING: Errors")


def test_email_temporary_refusal_is_retried_then_transient(
    smtp: Callable[..., SmtpReceiver], make_settings: Callable[..., Settings]
) -> None:
    from logflow.alerting.email import send_email

    server = smtp(reply="451 4.3.0 try again later")
    ctx, attempts = _ctx(settings=_mail_settings(make_settings, server, webhook_retries=1), retries=1)
    with pytest.raises(SendFailed) as info:
        send_email(PAYLOAD, {"to": ["ops@example.com"]}, ctx)
    assert not info.value.permanent and [a.status for a in attempts] == ["failed", "failed"]
    assert "451" in (attempts[0].error or "")


def test_email_without_smtp_settings_is_a_permanent_failure(make_settings: Callable[..., Settings]) -> None:
    from logflow.alerting.email import send_email

    with pytest.raises(SendFailed, match="LOGFLOW_SMTP_HOST") as info:
        send_email(PAYLOAD, {"to": ["ops@example.com"]}, _ctx(settings=make_settings())[0])
    assert info.value.permanent


def test_https_is_pinned_to_the_checked_address_and_verified_for_the_name(
    receivers: Callable[..., HttpReceiver], cert: tuple[Path, Path]
) -> None:
    import ssl

    hook = receivers(cert=cert)
    url = f"https://localhost:{hook.port}/secure"
    ctx, attempts = _ctx(allow="localhost")
    ctx.tls = ssl.create_default_context(cafile=str(cert[0]))
    send_webhook(PAYLOAD, {"url": url, "secret": "k"}, ctx)
    (req,) = hook.wait_for(1)
    # Connected to 127.0.0.1 (the checked address); certificate and Host are for "localhost".
    assert req.headers["host"] == f"localhost:{hook.port}" and verify_signature(req, "k")

    untrusted, attempts = _ctx(allow="localhost")  # system CAs only: the self-signed cert fails
    with pytest.raises(SendFailed, match="certificate") as info:
        send_webhook(PAYLOAD, {"url": url}, untrusted)
    assert info.value.permanent and len(attempts) == 1 and len(hook.requests) == 1
