"""The load generator: N concurrent keep-alive HTTP/1.1 connections, bounded in requests and in time.

Why not httpx: on this 2-core machine the client shares the CPU with the server under test, and httpx
spends several times more CPU per request than uvicorn does to answer a no-op; measured with httpx, every
server would look as fast as the client, and the ratios would mean nothing. So the client speaks minimal
HTTP/1.1 over asyncio streams (uvloop when available): request bytes are built by string formatting,
responses are parsed just enough (status, Content-Length or chunked) to stay in step and check the status.
It runs in the harness process; each server runs in its own uvicorn subprocess, so client and server
are separate processes, scheduled by the kernel over the two cores (not pinned: the SQLite store's
writer thread may use the second core, and pinning would hide that).

Every request's status is checked; a non-2xx answer is counted as an error and never as throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class ProtocolError(Exception):
    """The server answered something this minimal client cannot follow."""


@dataclass
class Response:
    status: int
    body: bytes


class Connection:
    """One keep-alive connection; one request at a time (HTTP/1.1 without pipelining)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2**22)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> Response:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length: int | None = None
        chunked = False
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        elif length is not None:
            body = await self.reader.readexactly(length) if length else b""
        else:
            raise ProtocolError("response without Content-Length or chunked encoding")
        if close:
            await self.close()
        return Response(status, body)


def build_request(method: str, path: str, port: int, body: bytes = b"", token: str | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    """What one bounded load run observed."""

    requests: int = 0
    units: int = 0  # events acknowledged (or requests, for queries)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float | None:
        """Units per second over the measured window; None when nothing succeeded."""
        return self.units / self.elapsed_s if self.units and self.elapsed_s > 0 else None


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[], tuple[bytes, int]],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    warmup_requests: int = 0,
) -> LoadResult:
    """Drive ``concurrency`` connections until ``max_requests`` are done or ``max_seconds`` have passed.

    ``make_request()`` returns the next request's bytes and how many units (events) it carries; it
    keeps its own counter, so warm-up requests never repeat a measured request's event ids. The first ``warmup_requests`` (spread over all connections) are sent but not measured.
    """
    result = LoadResult()
    counter = 0
    deadline = 0.0

    def next_index() -> int | None:
        nonlocal counter
        if counter >= max_requests:
            return None
        counter += 1
        return counter - 1

    connections = [Connection(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))

    async def warm(conn: Connection, share: int) -> None:
        for _ in range(share):
            raw, _units = make_request()
            await conn.request(raw)

    try:
        if warmup_requests:
            share = max(1, warmup_requests // concurrency)
            await asyncio.gather(*(warm(c, share) for c in connections))

        async def worker(conn: Connection) -> None:
            while time.perf_counter() < deadline:
                if next_index() is None:
                    return
                raw, units = make_request()
                started = time.perf_counter()
                try:
                    response = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    continue
                result.latencies_s.append(time.perf_counter() - started)
                result.requests += 1
                if 200 <= response.status < 300:
                    result.units += units
                else:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"HTTP {response.status}: {response.body[:300]!r}")

        start = time.perf_counter()
        deadline = start + max_seconds
        await asyncio.gather(*(worker(c) for c in connections))
        result.elapsed_s = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return result


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it is, with uvicorn[standard]): the client must be as cheap as possible."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.new_event_loop()
