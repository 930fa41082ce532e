"""Queries at scale: seed 10^6 events / 10^4 runs / 200 targets, then time the read endpoints.

Seeding goes through the store's own batch path (``Store.submit``: validation into ``CloudEvent``s, the
group-commit writer, the run projection and the aggregates — exactly what ingestion does, minus HTTP),
with a few submissions in flight so the writer always has a full group. Runs start evenly over the
last 7 days (so ``window=24h`` covers about a seventh of them and ``window=30d`` all of them), one in
five fails, targets take turns.

Then the real control plane (``outrider control-plane``) serves the seeded file and each query is sent
``query_samples`` times by one client, sequentially (latency, not throughput); filters rotate over
targets and runs, and paged queries follow ``next_cursor`` from one sample to the next.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import config as config_module
from bench import loadgen, payloads, postgres, servers, stats

#: Runs start evenly over this span: the 30-day windows of models/trends/budgets/errors cover all of it, at the
#: rollups' largest size (720 hours × targets × models), which does not grow with the number of events.
SPAN = timedelta(days=30)


def target_name(index: int) -> str:
    return f"org/repo-{index}"


def run_name(index: int) -> str:
    return f"seed-run-{index:06d}"


def seed(database_url: str, config: config_module.BenchConfig, log: Callable[..., Any]) -> dict[str, Any]:
    """Fill a fresh store with ``query_events`` events over ``query_runs`` runs; returns counts and timing."""
    from outrider.common import events
    from outrider.control_plane import settings, store

    per_run = max(len(payloads.RUN_SCRIPT), config.query_events // config.query_runs)
    the_store = store.Store(settings.Settings(database_url=database_url, api_tokens="seed"))
    the_store.open()
    started = time.perf_counter()
    now = datetime.now(UTC)
    first_start = now - SPAN
    step = (SPAN - timedelta(seconds=7 * per_run + 60)) / config.query_runs
    in_flight: collections.deque[Any] = collections.deque()
    accepted = duplicates = 0
    batch: list[Any] = []
    chunk = 1000

    def settle(limit: int) -> None:
        nonlocal accepted, duplicates
        while len(in_flight) > limit:
            new, dup, _position = in_flight.popleft().result(timeout=300)
            accepted += new
            duplicates += dup

    try:
        for index in range(config.query_runs):
            items = payloads.long_run_events(
                run_name(index),
                target_name(index % config.query_targets),
                first_start + step * index,
                per_run,
                failed=index % 5 == 4,
            )
            batch.extend(events.CloudEvent.model_validate(item) for item in items)
            if len(batch) >= chunk:
                in_flight.append(the_store.submit(batch))
                batch = []
                settle(8)
            if index and index % max(1, config.query_runs // 10) == 0:
                log(f"  seeded {index:,}/{config.query_runs:,} runs ({accepted:,} events committed)", highlight=False)
        if batch:
            in_flight.append(the_store.submit(batch))
        settle(0)
        appended = time.perf_counter() - started
        projected_at = _caught_up(the_store, log)
    finally:
        the_store.close()
    seconds = time.perf_counter() - started
    settled = _settle(database_url)
    return {
        "method": "Store.submit (the store's own batch path: CloudEvent validation, group commit into the event log; the projector folds it beside the writer)",
        "settled": settled,
        "events": accepted,
        "duplicates": duplicates,
        "runs": config.query_runs,
        "targets": config.query_targets,
        "events_per_run": per_run,
        "seconds": seconds,
        "append_seconds": appended,
        "projection_caught_up_after_s": projected_at,
        "events_per_s": accepted / seconds if seconds else None,
    }


def _caught_up(the_store: Any, log: Callable[..., Any], timeout: float = 3600.0) -> float:
    """Wait until the projector has folded the whole log (the queries read projections); seconds since the start."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        status = the_store.projection_status()
        if status["position"] >= status["head"]:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"the projection did not catch up: {status}")
        log(f"  projecting: {status['position']:,}/{status['head']:,}", highlight=False)
        time.sleep(2.0)


def query_plan(config: config_module.BenchConfig) -> list[tuple[str, Callable[[int, str | None], str], bool]]:
    """(name, path for sample i given the previous cursor, follows cursors)."""
    runs, targets = config.query_runs, config.query_targets
    since_1h = urllib.parse.quote((datetime.now(UTC) - timedelta(hours=1)).isoformat())
    since_6d = urllib.parse.quote((datetime.now(UTC) - timedelta(days=6)).isoformat())

    def with_cursor(path: str, cursor: str | None) -> str:
        return path + (f"&cursor={cursor}" if cursor else "")

    def t(i: int) -> str:
        return urllib.parse.quote(target_name(i % targets), safe="")

    return [
        ("/v1/runs/summary window=24h", lambda i, c: "/v1/runs/summary?window=24h", False),
        ("/v1/runs/summary window=30d (all runs)", lambda i, c: "/v1/runs/summary?window=30d", False),
        ("/v1/analytics/errors by=target window=7d", lambda i, c: "/v1/analytics/errors?by=target&window=7d", False),
        ("/v1/runs target=… limit=50", lambda i, c: f"/v1/runs?target={t(i)}&limit=50", False),
        ("/v1/runs status=failed, paged", lambda i, c: with_cursor("/v1/runs?status=failed&limit=100", c), True),
        ("/v1/runs/{id}", lambda i, c: f"/v1/runs/{run_name((i * 7919) % runs)}", False),
        ("/v1/events run_id=…", lambda i, c: f"/v1/events?run_id={run_name((i * 7919) % runs)}&limit=200", False),
        ("/v1/events target=…, paged", lambda i, c: with_cursor(f"/v1/events?target={t(7)}&limit=100", c), True),
        (
            "/v1/events type=run.failed, paged",
            lambda i, c: with_cursor("/v1/events?type=run.failed&limit=100", c),
            True,
        ),
        ("/v1/events since=1h ago", lambda i, c: f"/v1/events?since={since_1h}&limit=100", False),
        # A wide window, paged (time order, docs/api.md): must stay as fast as a recent one.
        ("/v1/events since=6d ago, paged", lambda i, c: with_cursor(f"/v1/events?since={since_6d}&limit=100", c), True),
        ("/v1/events limit=1000, paged (export)", lambda i, c: with_cursor("/v1/events?limit=1000", c), True),
        ("/metrics", lambda i, c: "/metrics", False),
        # Issue 14: analytics from rollups, their cost independent of the number of events.
        ("/v1/analytics/models window=30d", lambda i, c: "/v1/analytics/models?window=30d", False),
        ("/v1/analytics/models window=30d target=…", lambda i, c: f"/v1/analytics/models?window=30d&target={t(i)}", False),
        ("/v1/analytics/trends window=30d", lambda i, c: "/v1/analytics/trends?window=30d", False),
        ("/v1/analytics/errors by=target window=30d", lambda i, c: "/v1/analytics/errors?by=target&window=30d", False),
        ("/v1/budgets", lambda i, c: "/v1/budgets", False),
        ("/v1/budgets target=…", lambda i, c: f"/v1/budgets?target={t(i)}", False),
    ]


async def _time_queries(
    port: int, token: str, config: config_module.BenchConfig, store_name: str
) -> list[dict[str, Any]]:
    conn = loadgen.Connection("127.0.0.1", port)
    await conn.open()
    results = []
    try:
        for name, path_for, paged in query_plan(config):
            cursor: str | None = None
            latencies: list[float] = []
            errors = 0
            error_samples: list[str] = []
            warmup = 3
            budget_ends = time.monotonic() + config.query_max_seconds
            for i in range(-warmup, config.query_samples):
                if i >= 0 and time.monotonic() > budget_ends:
                    break  # a slow query gets fewer samples, never an unbounded run
                raw = loadgen.build_request("GET", path_for(i, cursor), port, token=token)
                started = time.perf_counter()
                response = await conn.request(raw)
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    errors += 1
                    if len(error_samples) < 3:
                        error_samples.append(f"HTTP {response.status}: {response.body[:200]!r}")
                    continue
                if paged:
                    cursor = json.loads(response.body).get("next_cursor")
                if i >= 0:
                    latencies.append(elapsed * 1000)
            results.append(
                {
                    "store": store_name,
                    "name": name,
                    "samples": len(latencies),
                    "p50_ms": stats.percentile(latencies, 50),
                    "p99_ms": stats.percentile(latencies, 99),
                    "max_ms": max(latencies) if latencies else None,
                    "errors": errors,
                    "error_samples": error_samples,
                }
            )
    finally:
        await conn.close()
    return results


def _settle(database_url: str) -> str | None:
    """After the bulk load, do what PostgreSQL does on its own within minutes of it — autovacuum's VACUUM ANALYZE
    (planner statistics, visibility map) and the checkpoint that writes the pages both dirtied — so the queries
    are timed on the steady state and not racing ~400 MB of background writes, which on 2 cores doubled some
    p50s in one run. SQLite has no such background work: nothing to do."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    import psycopg

    started = time.perf_counter()
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return f"VACUUM ANALYZE and CHECKPOINT after seeding ({time.perf_counter() - started:.1f} s)"


def run(
    config: config_module.BenchConfig,
    token: str,
    workdir: Path,
    pg: postgres.PostgresServer | None,
    log: Callable[..., Any],
) -> dict[str, Any]:
    """Seed SQLite (and PostgreSQL, when a server runs and time allows), then time every query."""
    stores = [("sqlite", f"sqlite:///{workdir / 'queries.db'}")]
    fresh: postgres.PostgresServer | None = None
    if pg is not None and config.postgres_queries:
        # A server of its own: the one the ingestion cells used is still vacuuming their databases in the
        # background (with it, this part's p50s read 2-4x higher than on a fresh server, docs/performance.md).
        fresh, _why = postgres.start()
        stores.append(("postgres", (fresh or pg).url))
    seeded: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    try:
        for name, url in stores:
            log(
                f"  seeding {name}: {config.query_events:,} events, {config.query_runs:,} runs, {config.query_targets} targets"
            )
            seeded[name] = seed(url, config, log)
            log(
                f"  seeded {name} in {seeded[name]['seconds']:.0f} s ({seeded[name]['events_per_s']:,.0f} events/s)",
                highlight=False,
            )
            server = servers.control_plane(f"{name}-queries", token, url, workdir).start(timeout_s=120)
            try:
                loop = loadgen.new_event_loop()
                try:
                    found = loop.run_until_complete(_time_queries(server.port, token, config, name))
                finally:
                    loop.close()
                memory = server.rss_mb()
            finally:
                with contextlib.suppress(Exception):
                    server.stop()
            for row in found:
                log(
                    f"  {name:<8} {row['name']:<42} p50 {row['p50_ms'] or 0:8.2f} ms  p99 {row['p99_ms'] or 0:8.2f} ms"
                    + (f"  ERRORS {row['errors']}: {row['error_samples'][:1]}" if row["errors"] else ""),
                    highlight=False,
                )
            results.extend(found)
            seeded[name]["server_memory_after_queries"] = memory
    finally:
        if fresh is not None:
            fresh.stop()
    return {"seed": seeded, "results": results}
