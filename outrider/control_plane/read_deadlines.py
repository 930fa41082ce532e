"""Deadlines on reading a request, so slow clients cannot hold connections open.

Why: uvicorn bounds the idle time between keep-alive requests (``timeout_keep_alive``) but not how long one
request takes to arrive. 300 connections sending a header byte every few seconds (slowloris), or bodies
dribbled a byte at a time, were all held for as long as the client liked. Here:

- the request line and headers must arrive within ``header_timeout_seconds`` of the connection opening or of
  the request's first byte (default 10 s);
- the whole body within ``body_timeout_seconds`` of its headers (default 30 s: 1 MiB, the largest body, at
  35 KiB/s).

Past a deadline the client gets ``408 Request Timeout`` (when no response has started), the connection
closes, and a handler waiting for the body sees the client gone. Each expiry is logged with the client's
address. This is the HTTP protocol uvicorn runs (httptools) with the two timers added, nothing else changed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def _timeout_body(what: str, seconds: float) -> bytes:
    return (
        b'{"error":"request_timeout","message":"the request\'s %s did not arrive within %g s"}' % (what.encode(), seconds)
    )


def protocol(header_seconds: float, body_seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with header and body read deadlines (pass it as ``uvicorn.Config(http=...)``)."""

    class ReadDeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self, what: str, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired, what, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self, what: str, seconds: float) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            address = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
            log.warning("http: the %s from %s did not arrive within %g s; closing the connection", what, address, seconds)
            cycle = self.cycle
            if cycle is None or not cycle.response_started:
                body = _timeout_body(what, seconds)
                self.transport.write(TIMEOUT_RESPONSE % (len(body), body))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm("headers", header_seconds)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm("headers", header_seconds)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if self.pipeline:  # queued behind a running request, reading paused: not the client's delay
                self._disarm()
            else:
                self._arm("body", body_seconds)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

    return ReadDeadlineProtocol
