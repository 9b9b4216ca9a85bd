"""Network listeners of ``logflow serve``/``api``: syslog over UDP, TCP and TLS, GELF over UDP.

They run in the API process's event loop (the app's lifespan starts and stops them) and are thin
adapters: frames are parsed and handed to the one ingest pipeline in a worker thread, in batches
of up to ``batch_items`` messages or ``linger_s`` seconds. Backpressure follows the transport:
a TCP connection reads nothing more until its frames are durable, and when the queue refuses a
batch the batch is retried with backoff while the connections wait (their senders see a full
socket). UDP cannot push back, so what the queue refuses (or what overflows the bounded pending
buffer) is dropped and counted. The counters appear under ``listeners`` in
``GET /api/v1/pipeline/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from logflow.ingest.batching import Batcher, BatchPolicy, ListenerCounters, Warnings
from logflow.ingest.decode import DecodedItem
from logflow.ingest.pipeline import IngestPipeline
from logflow.ingest.protocols.gelf import CHUNK_MAGIC, ChunkAssembler, GelfError, gelf_item
from logflow.ingest.protocols.syslog import BLANK, Frame, SyslogFramer, syslog_items
from logflow.settings import Settings

log = logging.getLogger("logflow.listeners")

READ_SIZE = 256 * 1024

# What to change when a listener cannot start, per listener.
_SETTING = {
    "syslog": "LOGFLOW_SYSLOG_PORT (or --syslog-port)",
    "syslog-tls": "LOGFLOW_SYSLOG_TLS_PORT",
    "gelf": "LOGFLOW_GELF_PORT (or --gelf-port)",
}


class ListenerError(Exception):
    """A listener cannot start; the message names the port and the setting to change."""


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """Where to listen (a port of 0 turns that listener off) and how to batch."""

    host: str = "127.0.0.1"
    syslog_port: int = 0
    syslog_tls_port: int = 0
    syslog_tls_cert: str = ""
    syslog_tls_key: str = ""
    gelf_port: int = 0
    max_frame_bytes: int = 256 * 1024
    batch_items: int = 1000
    linger_s: float = 0.05
    max_udp_pending: int = 20_000
    gelf_chunk_timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ListenerConfig:
        return cls(
            host=settings.effective_listen_host, syslog_port=settings.syslog_port,
            syslog_tls_port=settings.syslog_tls_port, syslog_tls_cert=settings.syslog_tls_cert,
            syslog_tls_key=settings.syslog_tls_key, gelf_port=settings.gelf_port,
            max_frame_bytes=settings.max_event_bytes,
        )


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, name: str, on_datagram: Callable[[bytes, Any], None]) -> None:
        self._name, self._on_datagram = name, on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self._name, exc)


def _bind(name: str, host: str, port: int, kind: socket.SocketKind) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (not yet listening), or a ListenerError saying what to change."""
    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
    where = f"{proto} {host or '*'}:{port}"
    hint = f"set {_SETTING[name]} to a free port (0 turns this listener off)"
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenerError(f"cannot listen for {name} on {where}: {exc}; check LOGFLOW_LISTEN_HOST") from None
    sockets: list[socket.socket] = []
    try:
        for family, type_, proto_no, _, address in infos:
            sock = socket.socket(family, type_, proto_no)
            sockets.append(sock)
            if kind == socket.SOCK_STREAM:  # restart while old connections linger in TIME_WAIT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            else:  # room for bursts of datagrams (chunked GELF) while the loop is busy
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenerError(f"cannot listen for {name} on {where}: {exc.strerror or exc}; {hint}") from None
    return sockets


class Listeners:
    """The configured listeners of one process: ``bind()`` early (to fail start-up clearly), then run."""

    def __init__(self, pipeline: IngestPipeline, config: ListenerConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.counters: dict[str, ListenerCounters] = {}
        self._sockets: dict[str, list[socket.socket]] = {}
        self._addresses: dict[str, list[str]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._servers: list[asyncio.Server] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._batchers: dict[str, Batcher[Any]] = {}
        self._assembler = ChunkAssembler(max_message_bytes=config.max_frame_bytes,
                                         timeout_s=config.gelf_chunk_timeout_s)
        self._expiry: asyncio.Task[None] | None = None
        self._warn = Warnings()

    def bind(self) -> None:
        """Bind every configured port now; raises ListenerError naming the port and the setting."""
        if self._sockets:
            return
        config = self.config
        try:
            if config.syslog_port:
                self._sockets["syslog_udp"] = _bind("syslog", config.host, config.syslog_port, socket.SOCK_DGRAM)
                self._sockets["syslog_tcp"] = _bind("syslog", config.host, config.syslog_port, socket.SOCK_STREAM)
            if config.syslog_tls_port:
                self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                try:
                    self._ssl.load_cert_chain(config.syslog_tls_cert, config.syslog_tls_key)
                except (OSError, ssl.SSLError) as exc:
                    raise ListenerError(f"cannot load the syslog TLS certificate {config.syslog_tls_cert!r} / key "
                                        f"{config.syslog_tls_key!r}: {exc}; check LOGFLOW_SYSLOG_TLS_CERT and "
                                        "LOGFLOW_SYSLOG_TLS_KEY") from None
                self._sockets["syslog_tls"] = _bind("syslog-tls", config.host, config.syslog_tls_port,
                                                    socket.SOCK_STREAM)
            if config.gelf_port:
                self._sockets["gelf_udp"] = _bind("gelf", config.host, config.gelf_port, socket.SOCK_DGRAM)
        except ListenerError:
            self.release()
            raise
        self.counters = {name: ListenerCounters() for name in self._sockets}
        self._addresses = {name: [f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for sock in sockets]
                           for name, sockets in self._sockets.items()}

    def release(self) -> None:
        """Close the bound sockets (for a start-up that ends before the listeners ran)."""
        for sockets in self._sockets.values():
            for sock in sockets:
                sock.close()
        self._sockets.clear()

    def addresses(self) -> dict[str, list[str]]:
        """``host:port`` each listener is (or was last) bound to."""
        return dict(self._addresses)

    async def start(self) -> None:
        """Serve on the bound sockets (binding first if ``bind()`` was not called)."""
        self.bind()
        loop = asyncio.get_running_loop()
        max_frame = self.config.max_frame_bytes
        policy = BatchPolicy(self.config.batch_items, self.config.linger_s, self.config.max_udp_pending)
        for name in self._sockets:
            decode: Callable[[list[Any]], list[DecodedItem]] = (
                partial(_gelf_items, max_bytes=max_frame) if name.startswith("gelf") else syslog_items)
            self._batchers[name] = Batcher(name, self.pipeline, decode, self.counters[name], policy, self._warn,
                                           reliable=not name.endswith("_udp"))
        for name, sockets in self._sockets.items():
            for sock in sockets:
                if name.endswith("_udp"):
                    handler = self._gelf_datagram if name == "gelf_udp" else self._syslog_datagram
                    transport, _ = await loop.create_datagram_endpoint(partial(_Datagrams, name, handler), sock=sock)
                    self._transports.append(transport)
                else:
                    tls = self._ssl if name == "syslog_tls" else None
                    server = await asyncio.start_server(partial(self._serve_stream, name), sock=sock, limit=READ_SIZE,
                                                        ssl=tls, ssl_handshake_timeout=15 if tls else None)
                    self._servers.append(server)
        if "gelf_udp" in self._sockets:
            self._expiry = asyncio.create_task(self._expire_chunks(), name="logflow-gelf-chunk-expiry")
        for name, addresses in self.addresses().items():
            log.info("listening for %s on %s", name.replace("_", " "), ", ".join(addresses))

    async def stop(self) -> None:
        """Stop accepting, close connections, submit what was received, release the ports."""
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
            self._expiry = None
        # Closing a connection ends its handler after the batch it may be waiting for.
        for writer in self._connections.values():
            writer.transport.abort()
        if self._connections:
            _, late = await asyncio.wait(list(self._connections), timeout=15)
            for task in late:
                task.cancel()
        for server in self._servers:
            await server.wait_closed()
        for batcher in self._batchers.values():
            await batcher.close()
        self._servers, self._transports, self._batchers = [], [], {}
        self.release()

    def stats(self) -> dict[str, Any]:
        """Address and counters of each listener (empty when none is configured)."""
        addresses = self.addresses()
        out: dict[str, Any] = {}
        for name, counters in self.counters.items():
            out[name] = {"addresses": addresses.get(name, []), **asdict(counters)}
            if name == "gelf_udp":
                out[name]["chunked_pending"] = self._assembler.pending
        return out

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """A FastAPI/Starlette lifespan: listeners run while the app runs."""
        try:
            await self.start()
            yield
        finally:  # also after a failed start: release whatever was bound
            await self.stop()

    # -- per-transport handlers -------------------------------------------------------------------------

    def _syslog_datagram(self, data: bytes, addr: Any) -> None:
        if not data.strip(BLANK):
            return
        self.counters["syslog_udp"].received += 1
        max_frame = self.config.max_frame_bytes
        self._batchers["syslog_udp"].offer(Frame(data[:max_frame], _host(addr), len(data) > max_frame))

    def _gelf_datagram(self, data: bytes, addr: Any) -> None:
        counters = self.counters["gelf_udp"]
        payload: bytes | None = data
        if data[:2] == CHUNK_MAGIC:
            try:
                payload = self._assembler.add(data, time.monotonic())
                counters.incomplete = self._assembler.incomplete
            except GelfError as exc:
                counters.received += 1
                counters.malformed += 1
                self._warn("gelf-chunk", "gelf udp: malformed chunk from %s: %s", _host(addr), exc)
                return
        if payload is None or not payload.strip():
            return
        counters.received += 1
        self._batchers["gelf_udp"].offer(payload)

    async def _expire_chunks(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.gelf_chunk_timeout_s / 2))
            expired = self._assembler.expire(time.monotonic())
            self.counters["gelf_udp"].incomplete = self._assembler.incomplete
            if expired:
                self._warn("gelf-incomplete", "gelf udp: chunked messages dropped incomplete after %ss (%d so far)",
                           self.config.gelf_chunk_timeout_s, self._assembler.incomplete)

    async def _serve_stream(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        counters, batcher = self.counters[name], self._batchers[name]
        host = _host(writer.get_extra_info("peername"))
        framer = SyslogFramer(self.config.max_frame_bytes)
        counters.connections += 1
        try:
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except OSError as exc:  # resets and TLS errors end this connection only
                    log.debug("%s: connection from %s: %s", name, host, exc)
                    data = b""
                frames = [frame for frame in (framer.feed(data) if data else framer.finish())
                          if frame.payload.strip(BLANK)]
                for frame in frames:
                    frame.peer = host
                counters.received += len(frames)
                if frames:
                    await batcher.put(frames)
                if not data:
                    return
        except asyncio.CancelledError:  # stop() gave up waiting; asyncio's own callback must not see it
            return
        finally:
            counters.connections -= 1
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _host(addr: Any) -> str | None:
    return str(addr[0]) if isinstance(addr, tuple) and addr else None


def _gelf_items(payloads: list[bytes], *, max_bytes: int) -> list[DecodedItem]:
    return [gelf_item(payload, index, max_bytes) for index, payload in enumerate(payloads)]
