"""Ingestion matrix: single events and batches, posted by 1, 8 and 32 concurrent clients, to every server.

The servers (baselines and real control planes) run side by side and are measured in interleaved order —
for each repeat, each workload, each concurrency, every server in turn (rotated per repeat) — so slow
drifts on a shared machine hit all of them alike and the ratios stay meaningful. Before every cell each
control plane's projection has caught up with its log, and the kernel has written back the dirty pages of earlier
cells: what a server accepted in its own cell and finishes afterwards (a projector that deferred to a burst, the
kernel's delayed write-back of its files) must not run during another server's cell. Each cell
records events/s, latency p50/p99, errors, the CPU the server and the client used (to show which was the
bottleneck), and how fast the machine ran pure-CPU work just before it (``machine.cpu_probe``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench import config as config_module
from bench import loadgen, machine, payloads, projection_bench, servers, stats

INGEST_PATH = "/v1/events"


#: The workload whose event ids are random UUIDs (``payloads.event_stream``), measured at the highest concurrency only.
RANDOM_IDS = "-uuid"


def workloads(config: config_module.BenchConfig) -> list[tuple[str, int | None, list[int]]]:
    """(name, batch size or None for single events, concurrencies). The batched workload also runs with random
    (UUIDv4) ids at the highest concurrency: what a producer using a CloudEvents SDK's default ids costs the store."""
    batched = f"batch{config.batch_size}"
    return [
        ("single", None, config.concurrencies),
        (batched, config.batch_size, config.concurrencies),
        (batched + RANDOM_IDS, config.batch_size, [max(config.concurrencies)]),
    ]


def measure_cell(
    server: servers.Server,
    token: str,
    batch: int | None,
    concurrency: int,
    config: config_module.BenchConfig,
    prefix: str,
    *,
    random_ids: bool = False,
) -> dict[str, Any]:
    """One bounded load run against one server; the raw figures of one repeat."""

    def build(body: bytes) -> bytes:
        return loadgen.build_request("POST", INGEST_PATH, server.port, body, token)

    make = payloads.request_maker(prefix, batch, build, random_ids=random_ids)
    cpu_probe_us = machine.cpu_probe()
    loop = loadgen.new_event_loop()
    try:
        server_cpu_before = servers.cpu_seconds(server.pid)
        client_cpu_before = time.process_time()
        result = loop.run_until_complete(
            loadgen.run_load(
                "127.0.0.1",
                server.port,
                make,
                concurrency=concurrency,
                max_requests=config.cell_max_requests,
                max_seconds=config.cell_seconds,
                warmup_requests=config.warmup_requests,
            )
        )
        client_cpu = time.process_time() - client_cpu_before
        server_cpu_after = servers.cpu_seconds(server.pid)
    finally:
        loop.close()
    latencies_ms = [x * 1000 for x in result.latencies_s]
    elapsed = result.elapsed_s or None
    server_cpu = (
        (server_cpu_after - server_cpu_before) / elapsed
        if elapsed and server_cpu_after is not None and server_cpu_before is not None
        else None
    )
    return {
        "events_per_s": result.rate,
        "requests": result.requests,
        "events": result.units,
        "errors": result.errors,
        "error_samples": result.error_samples,
        "elapsed_s": result.elapsed_s,
        "p50_ms": stats.percentile(latencies_ms, 50),
        "p99_ms": stats.percentile(latencies_ms, 99),
        # CPU cores busy on average during the window (1.0 = one core saturated).
        "server_cpu_cores": server_cpu,
        "client_cpu_cores": client_cpu / elapsed if elapsed else None,
        # The machine's speed just before the cell (µs per round of fixed CPU work: higher is slower).
        "cpu_probe_us": cpu_probe_us,
    }


def _settle(targets: list[servers.Server], token: str) -> None:
    """Wait until every control plane among ``targets`` has projected all it accepted (baselines have no
    background work), then until the kernel has written back what earlier cells left dirty (``sync``).

    Why the ``sync``: the kernel writes dirty pages back up to 30 s after they were written, in bursts (about
    100 MB at a time from PostgreSQL's data files, measured while it sat idle after its cells). A burst that lands
    in another server's cell slows that server's fsyncs (the NDJSON baseline's and SQLite's alike), so a server
    was charged for the write-back of whichever one ran before it."""
    for server in targets:
        if server.health_path == "/readyz":  # a control plane (servers.control_plane)
            projection_bench._wait_caught_up(server.port, token)
    os.sync()


def run(
    targets: list[servers.Server], token: str, config: config_module.BenchConfig, log: Any = print
) -> list[dict[str, Any]]:
    """Measure every (server, workload, concurrency) cell ``config.repeats`` times; one summary per cell."""
    raw: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    run_tag = f"{int(time.time())}"
    for repeat in range(config.repeats):
        order = targets[repeat % len(targets) :] + targets[: repeat % len(targets)]
        for workload, batch, concurrencies in workloads(config):
            for concurrency in concurrencies:
                for server in order:
                    _settle(targets, token)
                    prefix = f"bench-{run_tag}-{server.name}-{workload}-c{concurrency}-r{repeat}"
                    figures = measure_cell(server, token, batch, concurrency, config, prefix,
                                           random_ids=workload.endswith(RANDOM_IDS))
                    raw.setdefault((server.name, workload, concurrency), []).append(figures)
                    rate = figures["events_per_s"]
                    log(
                        f"  ingest {server.name:<13} {workload:<9} c={concurrency:<3} repeat {repeat + 1}/{config.repeats}: "
                        + (f"{rate:>10,.0f} events/s" if rate else "         — events/s")
                        + (f"  ERRORS {figures['errors']}: {figures['error_samples'][:1]}" if figures["errors"] else "")
                    )
    cells = []
    for server in targets:
        for workload, batch, concurrencies in workloads(config):
            for concurrency in concurrencies:
                repeats = raw[(server.name, workload, concurrency)]
                cells.append(
                    {
                        "server": server.name,
                        "workload": workload,
                        "batch": batch,
                        "concurrency": concurrency,
                        "events_per_s": stats.summary([r["events_per_s"] for r in repeats]),
                        "p50_ms": stats.summary([r["p50_ms"] for r in repeats]),
                        "p99_ms": stats.summary([r["p99_ms"] for r in repeats]),
                        "server_cpu_cores": stats.summary([r["server_cpu_cores"] for r in repeats]),
                        "client_cpu_cores": stats.summary([r["client_cpu_cores"] for r in repeats]),
                        "cpu_probe_us": stats.summary([r.get("cpu_probe_us") for r in repeats]),
                        "requests": sum(r["requests"] for r in repeats),
                        "errors": sum(r["errors"] for r in repeats),
                        "error_samples": [s for r in repeats for s in r["error_samples"]][:5],
                    }
                )
    return cells


def ratios(cells: list[dict[str, Any]], baselines: tuple[str, ...] = ("noop", "ndjson")) -> list[dict[str, Any]]:
    """Every non-baseline cell's median events/s divided by each baseline's, same workload and concurrency."""
    by_key = {(c["server"], c["workload"], c["concurrency"]): c for c in cells}
    found = []
    for cell in cells:
        if cell["server"] in baselines:
            continue
        for baseline in baselines:
            base = by_key.get((baseline, cell["workload"], cell["concurrency"]))
            if base is None:
                continue
            found.append(
                {
                    "server": cell["server"],
                    "baseline": baseline,
                    "workload": cell["workload"],
                    "concurrency": cell["concurrency"],
                    "ratio": stats.ratio(cell["events_per_s"]["median"], base["events_per_s"]["median"]),
                }
            )
    return found
