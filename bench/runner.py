"""Runs the benchmark parts in order, collects their figures and checks the targets.

Each part that cannot run says why in ``results[part]["skipped"]`` (a missing component) or
``results[part]["error"]`` (something broke); an error makes ``python -m bench`` exit non-zero.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import shutil
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import config as config_module
from bench import ingest, machine, postgres, report, servers, targets


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_all(
    output: Path,
    keep: bool = False,
    config: config_module.BenchConfig | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    config = config or config_module.from_environment()
    console = console or Console(width=160)
    log = console.print
    workdir = Path(tempfile.mkdtemp(prefix="outrider-bench-"))
    token = secrets.token_urlsafe(24)
    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": _now(),
        "quick": config.quick,
        "machine": machine.info(),
        "config": {k: v for k, v in vars(config).items()},
        "method": {
            "client": "bench.loadgen: minimal HTTP/1.1 keep-alive client on asyncio+uvloop, in the harness process",
            "servers": "each server is its own uvicorn subprocess on 127.0.0.1 (same uvicorn options); processes not pinned",
            "order": "cells interleaved: per repeat, per workload, per concurrency, every server in turn (rotated per repeat)",
            "figure": "median over repeats; spread_pct = (max - min) / median",
        },
    }
    results["machine"]["fsync_at_start"] = machine.fsync_probe(workdir)
    results["machine"]["cpu_probe_us_at_start"] = machine.cpu_probe()
    pg: postgres.PostgresServer | None = None
    pg_reason: str | None = None
    errors: list[str] = []
    try:
        if config.postgres and ("ingestion" in config.parts or "queries" in config.parts or "projection" in config.parts):
            log("[bold]starting PostgreSQL[/bold]")
            pg, pg_reason = postgres.start()
            if pg is None:
                log(f"[yellow]PostgreSQL not measured:[/yellow] {pg_reason}")
        elif not config.postgres:
            pg_reason = "disabled (BENCH_POSTGRES=0)"
        results["postgres"] = {"measured": pg is not None, "reason": pg_reason}

        if "ingestion" in config.parts:
            log("[bold]ingestion[/bold]")
            results["ingestion"] = _ingestion(config, token, workdir, pg, log, errors)
        if "projection" in config.parts:
            log("[bold]projection (event log → run records, rollups)[/bold]")
            results["projection"] = _guarded(
                "projection", errors,
                lambda: importlib.import_module("bench.projection_bench").run(config, token, workdir, pg, log))
        if "queries" in config.parts:
            log("[bold]queries at scale[/bold]")
            results["queries"] = _guarded(
                "queries", errors, lambda: importlib.import_module("bench.queries").run(config, token, workdir, pg, log)
            )
        if "limits" in config.parts:
            log("[bold]limits under abuse (a normal client while others hit the limits)[/bold]")
            results["limits"] = _guarded(
                "limits", errors, lambda: importlib.import_module("bench.limits_bench").run(config, token, workdir, log))
        if "operator" in config.parts:
            log("[bold]operator[/bold]")
            results["operator"] = _guarded(
                "operator", errors, lambda: importlib.import_module("bench.operator_bench").run(config, workdir, log)
            )
    finally:
        results["machine"]["fsync_at_end"] = machine.fsync_probe(workdir)
        results["machine"]["cpu_probe_us_at_end"] = machine.cpu_probe()
        if pg is not None:
            pg.stop()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    checks: list[dict[str, Any]] = []
    ingestion = results.get("ingestion") or {}
    if ingestion.get("cells"):
        checks += targets.ingestion(ingestion["cells"], f"batch{config.batch_size}", max(config.concurrencies))
    if results.get("projection") and "error" not in results["projection"]:
        checks += targets.projection(results["projection"], ingestion.get("cells") or [], f"batch{config.batch_size}")
    if (results.get("queries") or {}).get("results"):
        checks += targets.queries(results["queries"]["results"])
    if "operator" in config.parts:
        checks += targets.operator(results.get("operator"))
    if results.get("limits") and "error" not in results["limits"]:
        checks += targets.limits(results["limits"])
    results["targets"] = checks
    results["errors"] = errors
    results["complete"] = not errors
    results["finished_at"] = _now()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = machine.load_average()
    report.print_all(results, console)
    output.parent.mkdir(parents=True, exist_ok=True)
    report.write(results, output)
    log(f"wrote {output} in {results['duration_s']} s" + (f" — [red]{len(errors)} error(s)[/red]" if errors else ""))
    return results


def _guarded(part: str, errors: list[str], func: Any) -> dict[str, Any]:
    try:
        return func()
    except Exception as exc:  # a broken part must not hide the others' figures
        errors.append(f"{part}: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _ingestion(
    config: config_module.BenchConfig,
    token: str,
    workdir: Path,
    pg: postgres.PostgresServer | None,
    log: Any,
    errors: list[str],
) -> dict[str, Any]:
    started: list[servers.Server] = []
    notes: dict[str, str] = {}
    try:
        for kind in ("noop", "validate", "ndjson"):
            started.append(servers.baseline(kind, token, workdir).start())
        stores = [("sqlite", f"sqlite:///{workdir / 'ingest.db'}")]
        if pg is not None:
            stores.append(("postgres", pg.url))
        # The same control plane with its writer as a thread of the server (OUTRIDER_STORE_WRITER=thread), on
        # a file of its own: what the default writer process buys, measured in the same run.
        stores.insert(1, ("sqlite-thread", f"sqlite:///{workdir / 'ingest-thread.db'}"))
        for name, url in stores:
            extra = {"OUTRIDER_STORE_WRITER": "thread"} if name.endswith("-thread") else None
            try:
                started.append(servers.control_plane(name, token, url, workdir, extra).start())
            except servers.ServerError as exc:
                errors.append(f"ingestion: control plane on {name} did not start: {exc}")
                notes[name] = f"did not start: {str(exc)[:2000]}"
                log(f"[red]control plane on {name} did not start[/red]\n{exc}")
        cells = ingest.run(started, token, config, log=lambda line: log(line, highlight=False))
        return {"cells": cells, "ratios": ingest.ratios(cells), "notes": notes}
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.stop()
