"""The e-mail channel: SMTP with implicit TLS or STARTTLS and optional auth; text and HTML parts.

The SMTP server comes from the settings (``LOGFLOW_SMTP_*``), never from a rule: a rule only
names recipients, so rule authors cannot point LogFlow's SMTP client at arbitrary hosts.
Certificates are verified (``LOGFLOW_SMTP_CA_FILE`` adds a private CA). The ``Message-ID`` is
derived from the notification, so the rare duplicate of an at-least-once send is recognisable.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from logflow.alerting import payloads
from logflow.alerting.notifiers import SendContext, SendFailed, Transient, with_retries


def build_message(payload: dict[str, Any], config: dict[str, Any], sender: str, key: str) -> EmailMessage:
    """The multipart/alternative message (plain text first, then HTML)."""
    msg = EmailMessage()
    msg["Subject"] = payloads.email_subject(payload)
    msg["From"] = sender
    msg["To"] = ", ".join(config["to"])
    if config.get("cc"):
        msg["Cc"] = ", ".join(config["cc"])
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{key}@logflow>"
    msg["X-LogFlow-Event"] = str(payload["kind"])
    msg.set_content(payloads.email_text(payload))
    msg.add_alternative(payloads.email_html(payload), subtype="html")
    return msg


def _classify(exc: Exception) -> Exception:
    """SMTP 4xx and connection problems are transient; 5xx, auth and certificate errors are not."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SendFailed(f"SMTP authentication failed: {exc.smtp_code} {exc.smtp_error!r}", permanent=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        message = f"all recipients refused: {exc.recipients}"
        if any(400 <= c < 500 for c in codes):
            return Transient(message)
        return SendFailed(message, permanent=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        message = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        return Transient(message) if 400 <= exc.smtp_code < 500 else SendFailed(message, permanent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SendFailed(f"SMTP server certificate rejected: {exc}", permanent=True)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendFailed(f"SMTP server lacks a required extension: {exc}", permanent=True)
    return Transient(f"{type(exc).__name__}: {exc}")


def send_email(payload: dict[str, Any], config: dict[str, Any], ctx: SendContext) -> None:
    """Send ``payload`` to the rule's ``to``/``cc`` through the configured SMTP server."""
    settings = ctx.smtp
    if settings is None or not settings.smtp_host:
        raise SendFailed("e-mail is not configured: set LOGFLOW_SMTP_HOST", permanent=True)
    msg = build_message(payload, config, settings.smtp_from, ctx.idempotency_key)
    recipients = [*config["to"], *config.get("cc", [])]
    host, port, timeout = settings.smtp_host, settings.effective_smtp_port, settings.smtp_timeout_s
    tls = ssl.create_default_context(cafile=settings.smtp_ca_file or None)

    def attempt() -> None:
        try:
            client = (smtplib.SMTP_SSL(host, port, timeout=timeout, context=tls) if settings.smtp_ssl
                      else smtplib.SMTP(host, port, timeout=timeout))
            with client:
                if settings.smtp_starttls:
                    client.starttls(context=tls)
                if settings.smtp_username:
                    client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
                client.send_message(msg, from_addr=settings.smtp_from, to_addrs=recipients)
        except (smtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from None

    with_retries(ctx, ctx.retries, attempt)
