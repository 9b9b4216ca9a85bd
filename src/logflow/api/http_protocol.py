"""The uvicorn HTTP protocol LogFlow serves with (``logflow serve``/``api`` and the tests' servers)."""

from __future__ import annotations

import asyncio
from typing import Any


def half_close_tolerant_http() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, except that a request whose client half-closed after sending it is served.

    graypy's and pygelf's GELF HTTP handlers send their POST and close the socket without reading
    the answer. Graylog serves such a request; stock uvicorn marks it disconnected and the body,
    although received in full, is lost. This subclass keeps a half-closed connection open until the
    answer to a completely received request is written, then closes it. A request whose body is
    still incomplete at the half-close is a disconnect as before (nothing more can arrive).
    """
    base: Any
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # uvicorn without httptools: its h11 implementation
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class HalfCloseTolerantHTTP(base):  # type: ignore[misc]
        _close_after_response = False

        def eof_received(self) -> bool | None:
            # getattr: should a uvicorn release rename these internals, fall back to stock behaviour
            # (tests/integration/test_protocol_gelf.py would then show the lost GELF HTTP messages).
            cycle = getattr(self, "cycle", None)
            if (cycle is not None and not getattr(cycle, "response_complete", True)
                    and not getattr(cycle, "more_body", True)):
                self._close_after_response = True
                return True  # keep the transport: the answer can still be written
            return None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._close_after_response and not self.transport.is_closing():
                self.transport.close()

    return HalfCloseTolerantHTTP
