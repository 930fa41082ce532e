"""What the projector's defer budget (``OUTRIDER_PROJECTOR_DEFER_SECONDS``) buys and costs (not part of ``make bench``).

For each budget, one sitting: a control plane on SQLite with that budget, beside the no-op and NDJSON baselines;
``repeats`` rounds of the batched cells (100 per request, 32 connections) of all three in turn, each control-plane
cell only after its projection caught up; then the projection bench's sustained run (closed loop, then the drain)
and the lag at half that rate. Figures: events/s per cell, the control plane's median against each baseline's,
accepted and accepted-and-projected rates, lag p99.

    python -m bench.defer_tradeoff [budget ...]     # default: 0 2 3
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import config as config_module
from bench import ingest, projection_bench, servers

TOKEN = "bench-defer-tradeoff-token"


def sitting(budget: str, baselines: list[servers.Server], workdir: Path, config: config_module.BenchConfig,
            repeats: int = 3) -> dict[str, Any]:
    """One budget's figures (see the module docstring)."""
    plane = servers.control_plane(f"sqlite-defer-{budget}", TOKEN, f"sqlite:///{workdir / f'defer-{budget}.db'}", workdir,
                                  extra_env={"OUTRIDER_PROJECTOR_DEFER_SECONDS": budget}).start()
    cells: dict[str, list[float]] = {server.name: [] for server in [*baselines, plane]}
    try:
        projection_bench._wait_for_projector(plane.port, TOKEN)
        for repeat in range(repeats):
            for server in [*baselines, plane]:
                projection_bench._wait_caught_up(plane.port, TOKEN)
                figures = ingest.measure_cell(server, TOKEN, config.batch_size, 32, config,
                                              f"defer-{budget}-{repeat}-{server.name}-{time.time_ns()}")
                cells[server.name].append(figures["events_per_s"])
        sustained = projection_bench.sustained([plane.port], TOKEN, f"defer-{budget}-sustained", config)
        lag = projection_bench.lag_at([plane.port], TOKEN, f"defer-{budget}-lag", sustained["sustained_per_s"] / 2, config)
    finally:
        plane.stop()
    median = {name: statistics.median(values) for name, values in cells.items()}
    return {
        "cells": cells,
        **{f"vs_{server.name}": median[plane.name] / median[server.name] for server in baselines},
        "accepted_per_s": sustained["accepted_per_s"],
        "sustained_per_s": sustained["sustained_per_s"],
        "drain_seconds": sustained["drain_seconds"],
        "lag_p99_s": lag["lag_p99_s"],
    }


def main() -> None:
    budgets = sys.argv[1:] or ["0", "2", "3"]
    config = config_module.from_environment()
    results = {}
    with tempfile.TemporaryDirectory(prefix="outrider-defer-") as folder:
        workdir = Path(folder)
        baselines = [servers.baseline("noop", TOKEN, workdir).start(), servers.baseline("ndjson", TOKEN, workdir).start()]
        try:
            for budget in budgets:
                results[budget] = sitting(budget, baselines, workdir, config)
                print(budget, json.dumps(results[budget]), flush=True)
        finally:
            for server in baselines:
                server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
