"""Limits under abuse (issue 15): a normal client's requests stay fast while other clients hit the limits.

One control plane (SQLite, the shipped defaults for rates and read deadlines). A *normal* reader (its own read
key) sends ``GET /v1/runs?limit=20`` a hundred times a second, ``limits_samples`` times per phase, and its latencies
are compared with the same reader's on an idle server, measured in the same run:

- **idle**: nothing else running;
- **key at its rate**: another key sends exactly its sustained rate (200 requests a second, the shipped
  default) from 16 connections: legitimate load the server must serve, the baseline for the throttled key;
- **throttled key**: that key sends 1,000 a second (five times its rate), so once its burst is spent 800 a second
  are answered 429. What it sent and what was accepted per second are reported (over the whole phase, its
  burst included): the limit holding;
- **slow clients**: 300 connections that send part of a request's headers and stop (slowloris), held open
  until the header deadline closes them;
- **both**: the throttled key and the slow clients at once;
- **saturating key**: the other key sends as fast as 16 connections go (closed loop). Reported without a
  target: on this 2-core machine that client's own process takes a core and the server's refusals the other,
  so it measures the machine's capacity, not the limits (which keep it to its rate; a saturating client is
  stopped by the connection bound and the network, not by answering it).

Targets (a normal request stays fast while others hit the limits): the throttled key, and both, cost the normal
reader's p99 at most 2× what the same key costs when it keeps to its rate; the slow clients at most 2× idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import config as config_module
from bench import loadgen, servers, stats

SLOW_CONNECTIONS = 300
ABUSER_CONNECTIONS = 16
#: The shipped sustained rate per credential, and five times it (the throttled key).
SUSTAINED_RATE = 200.0
ABUSE_RATE = 5 * SUSTAINED_RATE
#: The normal reader's pace (requests a second).
NORMAL_RATE = 100.0


def _key(port: int, token: str, role: str = "read") -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/keys", data=json.dumps({"role": role}).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 — loopback
        return str(json.loads(response.read())["secret"])


def _normal(port: int, key: str, samples: int) -> list[float]:
    """Latencies (s) of ``samples`` reads on one keep-alive connection, ``NORMAL_RATE`` a second (within its
    own credential's rate, as a normal client is)."""

    async def measure() -> list[float]:
        conn = loadgen.Connection("127.0.0.1", port)
        await conn.open()
        raw = loadgen.build_request("GET", "/v1/runs?limit=20", port, token=key)
        found = []
        next_at = time.perf_counter()
        try:
            for _ in range(samples):
                next_at += 1 / NORMAL_RATE
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                started = time.perf_counter()
                response = await conn.request(raw)
                found.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"the normal reader got HTTP {response.status}: {response.body[:200]!r}")
        finally:
            await conn.close()
        return found

    loop = loadgen.new_event_loop()
    try:
        return loop.run_until_complete(measure())
    finally:
        loop.close()


def _abuse(port: int, key: str, rate: float | None, stop: Any, throttled: Any, outcome: Any) -> None:
    """The abusive key's loop: ``rate`` requests a second over 16 connections (open loop), or as fast as they go
    (None). In its own process: in the measuring process it would hold the interpreter lock, and its turns
    would count as the server's latency. ``throttled`` is set at its first refusal."""
    counts = {"requests": 0, "accepted": 0}
    raw = loadgen.build_request("GET", "/v1/runs?limit=1", port, token=key)

    async def worker(index: int) -> None:
        conn = loadgen.Connection("127.0.0.1", port)
        await conn.open()
        interval = ABUSER_CONNECTIONS / rate if rate else 0.0
        next_at = time.perf_counter() + interval * index / ABUSER_CONNECTIONS  # staggered: an even stream, not bursts
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        try:
            while not stop.is_set():
                response = await conn.request(raw)
                counts["requests"] += 1
                counts["accepted"] += 200 <= response.status < 300
                if response.status == 429 and not throttled.is_set():
                    throttled.set()
                if interval:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        finally:
            await conn.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(ABUSER_CONNECTIONS)))
        return time.perf_counter() - started

    loop = loadgen.new_event_loop()
    try:
        seconds = loop.run_until_complete(main())
    finally:
        loop.close()
    outcome.put({**counts, "seconds": seconds})


@contextlib.contextmanager
def _abuser(port: int, key: str, rate: float | None) -> Iterator[dict[str, Any]]:
    """Another key reading at ``rate`` a second (None: as fast as 16 connections go), in a process of its own,
    until the block ends."""
    context = multiprocessing.get_context("fork")
    stop, throttled, queue = context.Event(), context.Event(), context.Queue()
    process = context.Process(target=_abuse, args=(port, key, rate, stop, throttled, queue), name="abuser", daemon=True)
    process.start()
    if rate is None or rate > SUSTAINED_RATE:
        # Past its burst (1,000 at once, drained by what it sends above 200 a second): from its first refusal on it is
        # throttled. Waited for, not assumed: on a loaded machine it sends fewer and gets there later (at most 60 s).
        throttled.wait(timeout=60)
    else:
        time.sleep(3.0)  # settled at its own rate
    outcome: dict[str, Any] = {}
    try:
        yield outcome
    finally:
        stop.set()
        outcome.update(queue.get(timeout=60))
        process.join(timeout=60)


@contextlib.contextmanager
def _slow_clients(port: int) -> Iterator[list[socket.socket]]:
    held = []
    try:
        for _ in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


def _phase(samples: int, measure: Callable[[], list[float]]) -> dict[str, Any]:
    latencies = measure()
    return {"samples": len(latencies), "p50_ms": _ms(stats.percentile(latencies, 50)),
            "p99_ms": _ms(stats.percentile(latencies, 99)), "max_ms": _ms(max(latencies) if latencies else None)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def run(config: config_module.BenchConfig, token: str, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    samples = config.limits_samples
    server = servers.control_plane("limits", token, f"sqlite:///{workdir / 'limits.db'}", workdir, extra_env={
        # The shipped defaults (servers.control_plane turns the rates off for throughput parts).
        "OUTRIDER_KEY_REQUESTS_PER_SECOND": "200", "OUTRIDER_KEY_INGEST_BYTES_PER_SECOND": str(4 * 1024 * 1024)})
    server.start()
    try:
        normal, abuser = _key(server.port, token), _key(server.port, token)
        _normal(server.port, normal, 20)  # warm-up

        def read() -> list[float]:
            return _normal(server.port, normal, samples)

        phases: dict[str, Any] = {"idle": _phase(samples, read)}
        log(f"  idle: p99 {phases['idle']['p99_ms']} ms")
        def abused(name: str, rate: float | None, slow: bool) -> None:
            with _abuser(server.port, abuser, rate) as outcome, _slow_clients(server.port) if slow else contextlib.nullcontext():
                phases[name] = _phase(samples, read)
            if outcome.get("seconds"):
                phases[name]["abuser_sent_per_s"] = round(outcome["requests"] / outcome["seconds"], 1)
                phases[name]["abuser_accepted_per_s"] = round(outcome["accepted"] / outcome["seconds"], 1)
            log(f"  {name}: p99 {phases[name]['p99_ms']} ms" + (
                f"; the key sent {phases[name].get('abuser_sent_per_s')}/s, {phases[name].get('abuser_accepted_per_s')}/s accepted"
                if rate is not None or name == "saturating_key" else ""))

        abused("key_at_its_rate", SUSTAINED_RATE, slow=False)
        abused("throttled_key", ABUSE_RATE, slow=False)
        with _slow_clients(server.port):
            phases["slow_clients"] = _phase(samples, read)
        log(f"  slow_clients ({SLOW_CONNECTIONS}): p99 {phases['slow_clients']['p99_ms']} ms")
        abused("both", ABUSE_RATE, slow=True)
        abused("saturating_key", None, slow=False)
        for figures in phases.values():
            for baseline in ("idle", "key_at_its_rate"):
                r = stats.ratio(figures["p99_ms"], phases[baseline]["p99_ms"])
                figures[f"p99_vs_{baseline}"] = None if r is None else round(r, 2)
        return {"phases": phases, "slow_connections": SLOW_CONNECTIONS, "abuser_connections": ABUSER_CONNECTIONS,
                "rss_mb": server.rss_mb()}
    finally:
        server.stop()
