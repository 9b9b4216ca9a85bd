"""Real notification receivers for the alerting tests: an HTTP server and an SMTP server (aiosmtpd).

Both listen on loopback only and record everything they receive. Nothing here is a mock: the
engine's senders talk to them over real sockets, with real TLS where a test asks for it.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One HTTP request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


# A reply: (status, headers, body). A callable gets the request number (0-based) and the request.
Reply = tuple[int, dict[str, str], bytes]


class HttpReceiver:
    """A threaded HTTP server on ``host`` (loopback). ``script`` decides each reply (default 200)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        script: Callable[[int, Received], Reply] | None = None,
        delay_s: float = 0.0,
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        """``cert`` (certificate, key) makes it an HTTPS server."""
        self.requests: list[Received] = []
        self.script = script
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = Received(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with receiver._lock:
                    number = len(receiver.requests)
                    receiver.requests.append(req)
                    receiver._changed.notify_all()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                status, headers, body = receiver.script(number, req) if receiver.script else (200, {}, b"ok")
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = int(self.server.server_address[1])
        self.url = f"{'https' if cert else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
                self._changed.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signature(req: Received, secret: str) -> bool:
    """What a receiver does with ``X-LogFlow-Signature`` (see docs/alerting.md)."""
    timestamp = req.headers["x-logflow-timestamp"]
    expected = (
        "sha256="
        + hmac.new(secret.encode(), timestamp.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, req.headers.get("x-logflow-signature", ""))


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 (cert, key), made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated_as: str | None

    def part(self, subtype: str) -> str:
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None, f"no text/{subtype} part"
        return str(found.get_content())  # type: ignore[attr-defined]


@dataclass
class SmtpReceiver:
    """aiosmtpd on loopback: plain, STARTTLS (``tls``) or implicit TLS (``implicit_tls``), optional AUTH."""

    cert: Path | None = None
    key: Path | None = None
    starttls: bool = False
    implicit_tls: bool = False
    credentials: tuple[str, str] | None = None
    reply: str = "250 OK"  # e.g. "451 try later" to make the server refuse
    mails: list[Mail] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if not receiver.reply.startswith("250"):
                    return receiver.reply
                message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                login = session.auth_data.login.decode() if session.auth_data is not None else None
                receiver.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, login))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and receiver.credentials is not None
                and (data.login.decode(), data.password.decode()) == receiver.credentials
            )
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        context = None
        if self.cert is not None and self.key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert), str(self.key))
        kwargs: dict[str, Any] = {}
        if self.starttls:
            kwargs.update(tls_context=context, require_starttls=True)
        if self.implicit_tls:
            kwargs.update(ssl_context=context)
        if self.credentials is not None:
            kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.mails)}")
            time.sleep(0.02)
        return list(self.mails)

    def close(self) -> None:
        self.controller.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def ensure_alert_routes(app: Any) -> None:
    """Mount ``/api/v1/alerts`` on a test app unless ``create_app`` already does."""
    from logflow.api.routes import alerts

    if not any(getattr(route, "path", "") == "/api/v1/alerts/rules" for route in app.routes):
        app.include_router(alerts.router)
