"""The event log and its projector (issue 14): sustained rate, projection lag, and two replicas on PostgreSQL.

- **sustained**: batches of ``batch_size`` events from 32 connections for ``sustained_seconds``; the rate is the
  events accepted divided by the time from the first request until the projection has folded all of them
  (``GET /v1/projection`` lag back to zero): events accepted *and* projected.
- **lag at half load**: an open-loop sender posts batches at half the sustained rate for ``lag_seconds`` while a
  sampler reads ``lag_seconds`` (the age of the oldest unprojected event) every 20 ms; p50/p99/max of the
  samples. Each sample bounds the lag of every event waiting at that moment, so this p99 over-states the
  per-event p99, never under-states it.
- **two replicas** (PostgreSQL): the same sustained load split over two control planes on one database, next
  to one replica's figures.
- **before the event log** (SQLite): the issue's baseline, "today's batched rate", is the control plane before the
  event log (``servers.before_log``: it folded every event in the request's transaction, so what it accepted was
  projected). Its batches of ``batch_size`` from 32 connections are measured as the ingestion matrix's cells are,
  ``repeats`` cells just before the sustained run and ``repeats`` just after it (so a drift of the machine's speed
  during the run falls on both sides), and their median is the baseline of the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import config as config_module
from bench import loadgen, payloads, postgres, servers, stats


def _status(port: int, token: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/projection", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 — loopback
        return dict(json.loads(response.read()))


def _wait_caught_up(port: int, token: str, timeout: float = 600.0) -> float:
    """Seconds until the projection's position reaches the log's head (polled every 10 ms)."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        status = _status(port, token)
        if status["position"] >= status["head"]:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"projection did not catch up: {status}")
        time.sleep(0.01)


def _load(ports: list[int], token: str, prefix: str, batch: int, concurrency: int, seconds: float) -> loadgen.LoadResult:
    """Closed-loop load over ``ports`` (connections split evenly), all in one event loop."""

    async def all_of() -> list[loadgen.LoadResult]:
        jobs = []
        for index, port in enumerate(ports):
            def build(body: bytes, port: int = port) -> bytes:
                return loadgen.build_request("POST", "/v1/events", port, body, token)

            make = payloads.request_maker(f"{prefix}-{index}", batch, build)
            jobs.append(loadgen.run_load("127.0.0.1", port, make, concurrency=concurrency // len(ports),
                                         max_requests=10**9, max_seconds=seconds))
        return list(await asyncio.gather(*jobs))

    loop = loadgen.new_event_loop()
    try:
        parts = loop.run_until_complete(all_of())
    finally:
        loop.close()
    total = loadgen.LoadResult()
    for part in parts:
        total.requests += part.requests
        total.units += part.units
        total.errors += part.errors
        total.error_samples += part.error_samples
        total.latencies_s += part.latencies_s
        total.elapsed_s = max(total.elapsed_s, part.elapsed_s)
    return total


def _wait_for_projector(port: int, token: str, timeout: float = 60.0) -> None:
    """Until a projector holds the lease: a control plane is ready before its projector process has started
    (the projector's lease has a startup grace), and timing from then would count its start-up as load."""
    deadline = time.monotonic() + timeout
    while not _status(port, token).get("holder"):
        if time.monotonic() > deadline:
            raise TimeoutError("no projector took the lease")
        time.sleep(0.05)


def sustained(ports: list[int], token: str, prefix: str, config: config_module.BenchConfig) -> dict[str, Any]:
    _wait_for_projector(ports[0], token)
    _wait_caught_up(ports[0], token)
    os.sync()  # what earlier loads left dirty is written back before, not during, this one
    started = time.perf_counter()
    result = _load(ports, token, prefix, config.batch_size, 32, config.sustained_seconds)
    accepted_at = time.perf_counter() - started
    drain = _wait_caught_up(ports[0], token)
    total = accepted_at + drain
    latencies = [x * 1000 for x in result.latencies_s]
    return {
        "events": result.units,
        "errors": result.errors,
        "error_samples": result.error_samples[:3],
        "accepted_per_s": result.units / accepted_at if accepted_at else None,
        "sustained_per_s": result.units / total if total else None,
        "load_seconds": accepted_at,
        "drain_seconds": drain,
        "ingest_p99_ms": stats.percentile(latencies, 99),
    }


def lag_at(ports: list[int], token: str, prefix: str, rate: float, config: config_module.BenchConfig) -> dict[str, Any]:
    """Open-loop batches at ``rate`` events/s for ``lag_seconds``; lag samples every 20 ms."""
    _wait_caught_up(ports[0], token)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                samples.append(float(_status(ports[0], token)["lag_seconds"]))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    batch = config.batch_size
    interval = batch / rate
    sent = errors = 0

    async def send_all() -> None:
        nonlocal sent, errors
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        makers = []
        for index, port in enumerate(ports):
            def build(body: bytes, port: int = port) -> bytes:
                return loadgen.build_request("POST", "/v1/events", port, body, token)
            makers.append(payloads.request_maker(f"{prefix}-{index}", batch, build))
        connections = [loadgen.Connection("127.0.0.1", ports[i % len(ports)]) for i in range(8)]
        await asyncio.gather(*(c.open() for c in connections))

        async def worker(conn: loadgen.Connection) -> None:
            nonlocal sent, errors
            while (raw := await queue.get()) is not None:
                response = await conn.request(raw)
                if 200 <= response.status < 300:
                    sent += batch
                else:
                    errors += 1

        workers = [asyncio.create_task(worker(c)) for c in connections]
        start = time.perf_counter()
        k = 0
        while (now := time.perf_counter()) - start < config.lag_seconds:
            due = start + k * interval
            if due > now:
                await asyncio.sleep(due - now)
            raw, _units = makers[k % len(makers)]()
            queue.put_nowait(raw)  # open loop: a slow server makes the queue grow, never the rate drop
            k += 1
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        await asyncio.gather(*(c.close() for c in connections))

    sampler.start()
    loop = loadgen.new_event_loop()
    try:
        loop.run_until_complete(send_all())
    finally:
        loop.close()
        _wait_caught_up(ports[0], token)
        stop.set()
        sampler.join(timeout=5)
    return {
        "rate_per_s": rate,
        "events": sent,
        "errors": errors,
        "samples": len(samples),
        "lag_p50_s": stats.percentile(samples, 50),
        "lag_p99_s": stats.percentile(samples, 99),
        "lag_max_s": max(samples) if samples else None,
    }


def before_log_cells(server: servers.Server, token: str, config: config_module.BenchConfig, tag: str) -> list[float]:
    """``repeats`` cells of batches from 32 connections against the control plane before the event log; events/s each."""
    from bench import ingest  # here: bench.ingest imports this module

    rates = []
    for repeat in range(config.repeats):
        os.sync()  # as before every cell of the matrix: earlier writes are not this cell's
        figures = ingest.measure_cell(server, token, config.batch_size, 32, config, f"{tag}-r{repeat}")
        if figures["errors"]:
            raise RuntimeError(f"the control plane before the event log refused batches: {figures['error_samples'][:1]}")
        rates.append(figures["events_per_s"])
    return rates


def run(config: config_module.BenchConfig, token: str, workdir: Path, pg: postgres.PostgresServer | None,
        log: Callable[..., Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    stores: list[tuple[str, str, int]] = [("sqlite", f"sqlite:///{workdir / 'projection.db'}", 1)]
    if pg is not None:
        stores.append(("postgres", pg.create_database("outrider_projection_1"), 1))
        stores.append(("postgres-2-replicas", pg.create_database("outrider_projection_2"), 2))
    for name, url, replicas in stores:
        baseline = servers.before_log(token, f"sqlite:///{workdir / 'before-log.db'}", workdir) if name == "sqlite" else None
        skipped = None
        if isinstance(baseline, str):
            log(f"  projection: SKIPPED the same-run baseline before the event log: {baseline}")
            skipped, baseline = baseline, None
        started = [servers.control_plane(f"{name}-{n}", token, url, workdir).start(timeout_s=60) for n in range(replicas)]
        try:
            ports = [server.port for server in started]
            tag = f"proj-{name}-{int(time.time())}"
            before: list[float] = []
            if baseline is not None:
                try:  # older code on this checkout's libraries: one that no longer starts is reported, not fatal
                    started.append(baseline.start(timeout_s=60))
                except servers.ServerError as exc:
                    skipped, baseline = f"it did not start with this checkout's environment: {exc}"[:2000], None
                    log(f"  projection: SKIPPED the same-run baseline before the event log: {skipped}")
            if baseline is not None:
                before += before_log_cells(baseline, token, config, f"{tag}-before-log-1")
            figures = sustained(ports, token, tag, config)
            if baseline is not None:
                before += before_log_cells(baseline, token, config, f"{tag}-before-log-2")
                figures["before_log"] = {"commit": servers.BEFORE_LOG_COMMIT, "events_per_s": stats.summary(before)}
                log(f"  projection before the event log: batches at 32 clients {figures['before_log']['events_per_s']['median']:>9,.0f} "
                    f"events/s (median of {len(before)} cells around the sustained run)", highlight=False)
            elif skipped is not None:
                figures["before_log"] = {"skipped": skipped}
            log(f"  projection {name:<20} accepted {figures['accepted_per_s'] or 0:>9,.0f} events/s, "
                f"accepted and projected {figures['sustained_per_s'] or 0:>9,.0f} events/s "
                f"(drained in {figures['drain_seconds']:.1f} s)", highlight=False)
            rate = (figures["sustained_per_s"] or 0) / 2
            if rate > 0:
                figures["half_load"] = lag_at(ports, token, tag + "-lag", rate, config)
                lag = figures["half_load"]
                log(f"  projection {name:<20} lag at {rate:,.0f} events/s: p50 {lag['lag_p50_s'] or 0:.3f} s, "
                    f"p99 {lag['lag_p99_s'] or 0:.3f} s, max {lag['lag_max_s'] or 0:.3f} s", highlight=False)
            figures["replicas"] = replicas
            found[name] = figures
        finally:
            for server in started:
                with contextlib.suppress(Exception):
                    server.stop()
    return found
