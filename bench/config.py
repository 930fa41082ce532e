"""How big and how long each benchmark runs: the full run (``make bench``) and a quick smoke run.

``BENCH_QUICK=1`` selects the quick sizes (seconds, for a smoke test); the full sizes keep ``make bench``
within about 15 minutes on a 2-core machine. Every field can be overridden in code (the smoke test does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class BenchConfig:
    quick: bool
    #: Times each ingestion cell is measured; the figure is the median, the spread is reported.
    repeats: int
    #: Each ingestion cell stops after this many seconds or this many requests, whichever comes first.
    cell_seconds: float
    cell_max_requests: int
    #: Requests sent before measuring (connections open, caches warm), not counted.
    warmup_requests: int
    concurrencies: list[int] = field(default_factory=lambda: [1, 8, 32])
    batch_size: int = 100
    #: Query benchmark: stored events, runs and targets (events = runs * 20 * ... see queries.seed).
    query_events: int = 1_000_000
    query_runs: int = 10_000
    query_targets: int = 200
    #: Sequential requests per query endpoint (after warm-up), and the time one endpoint may take at most.
    query_samples: int = 200
    query_max_seconds: float = 15.0
    #: Also seed and query PostgreSQL (BENCH_POSTGRES_QUERIES=1): seeding 10^6 events through the store takes
    #: several minutes more there, beyond the ~15-minute budget; ingestion always covers PostgreSQL.
    postgres_queries: bool = False
    #: Operator benchmark sizes (BENCH_OPERATOR_RUNS / BENCH_OPERATOR_TARGETS): the issue's 1,000 Runs across 50
    #: Targets (each phase creates that many, so 2,000 Runs in all). With the bench's indexed KMock
    #: (bench/kmock_server.py) the operator part takes ~1.5-2 minutes at this size on 2 shared cores.
    operator_runs: int = 1000
    operator_targets: int = 50
    #: Projection benchmark (bench.projection_bench): seconds of closed-loop load for the sustained rate, and of
    #: open-loop load at half that rate for the projection lag.
    sustained_seconds: float = 10.0
    lag_seconds: float = 10.0
    #: Limits benchmark (bench.limits_bench): the normal reader's sequential requests per phase.
    limits_samples: int = 500
    #: Which parts to run: any of ingestion, projection, queries, operator, limits.
    parts: list[str] = field(default_factory=lambda: ["ingestion", "projection", "queries", "operator", "limits"])
    #: PostgreSQL is measured when a server can be started here.
    postgres: bool = True


def from_environment() -> BenchConfig:
    """The configuration chosen by ``BENCH_QUICK`` and ``BENCH_PARTS`` (comma-separated)."""
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    if quick:
        config = BenchConfig(
            quick=True,
            repeats=1,
            cell_seconds=0.5,
            cell_max_requests=2000,
            warmup_requests=16,
            query_events=20_000,
            query_runs=1_000,
            query_targets=20,
            query_samples=30,
            operator_runs=50,
            operator_targets=5,
            sustained_seconds=1.0,
            lag_seconds=1.0,
            limits_samples=100,
        )
    else:
        config = BenchConfig(quick=False, repeats=3, cell_seconds=2.0, cell_max_requests=200_000, warmup_requests=64)
    if os.environ.get("BENCH_OPERATOR_RUNS"):
        config.operator_runs = int(os.environ["BENCH_OPERATOR_RUNS"])
    if os.environ.get("BENCH_OPERATOR_TARGETS"):
        config.operator_targets = int(os.environ["BENCH_OPERATOR_TARGETS"])
    parts = os.environ.get("BENCH_PARTS")
    if parts:
        config.parts = [p.strip() for p in parts.split(",") if p.strip()]
    if os.environ.get("BENCH_QUERY_EVENTS"):  # e.g. 10000000 for the 10^7 (runs grow in proportion)
        scale = int(os.environ["BENCH_QUERY_EVENTS"]) / config.query_events
        config.query_events = int(os.environ["BENCH_QUERY_EVENTS"])
        config.query_runs = int(config.query_runs * scale)
    if os.environ.get("BENCH_POSTGRES_QUERIES") == "1":
        config.postgres_queries = True
    if os.environ.get("BENCH_POSTGRES", "1") == "0":
        config.postgres = False
    return config
