"""Presenting results: the console tables (rich) and ``bench/results.json``.

Missing figures print as "—" and are stored as null, never as a placeholder number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DASH = "—"


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return DASH
    return f"{value:,.{digits}f}{suffix}"


def fmt_measured(value: float | None) -> str:
    """A target's measured figure: three decimals below 1, so 0.249 against a bound of 0.25 does not read as 0.25."""
    return fmt(value, 3 if value is not None and abs(value) < 1 else 2)


def spread(summary: dict[str, Any]) -> str:
    return DASH if summary.get("spread_pct") is None else f"±{summary['spread_pct'] / 2:.0f}%"


def ingestion_table(cells: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> Table:
    table = Table(title="Ingestion (median over repeats; spread = (max-min)/2 of median)")
    for column in (
        "server",
        "workload",
        "clients",
        "events/s",
        "spread",
        "p50 ms",
        "p99 ms",
        "× no-op",
        "× NDJSON",
        "srv CPU",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("server", "workload") else "right")
    by = {(r["server"], r["workload"], r["concurrency"], r["baseline"]): r["ratio"] for r in ratios}
    for cell in cells:
        key = (cell["server"], cell["workload"], cell["concurrency"])
        table.add_row(
            cell["server"],
            cell["workload"],
            str(cell["concurrency"]),
            fmt(cell["events_per_s"]["median"]),
            spread(cell["events_per_s"]),
            fmt(cell["p50_ms"]["median"], 2),
            fmt(cell["p99_ms"]["median"], 2),
            fmt(by.get((*key, "noop")), 2, "×") if (*key, "noop") in by else "",
            fmt(by.get((*key, "ndjson")), 2, "×") if (*key, "ndjson") in by else "",
            fmt(cell["server_cpu_cores"]["median"], 2),
            str(cell["errors"]),
        )
    return table


def queries_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Queries at scale (sequential requests)")
    for column in ("store", "query", "samples", "p50 ms", "p99 ms", "max ms", "errors"):
        table.add_column(column, justify="left" if column in ("store", "query") else "right")
    for row in rows:
        table.add_row(
            row["store"],
            row["name"],
            str(row["samples"]),
            fmt(row["p50_ms"], 2),
            fmt(row["p99_ms"], 2),
            fmt(row["max_ms"], 2),
            str(row["errors"]),
        )
    return table


def operator_table(result: dict[str, Any]) -> Table:
    table = Table(title="Operator with KMock")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, fmt(value, 3) if isinstance(value, float) else str(value))
    return table


def targets_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(title="Targets")
    for column in ("check", "target", "measured", "met", "note"):
        table.add_column(column)
    for check in checks:
        met = {True: "yes", False: "NO", None: DASH}[check["met"]]
        table.add_row(check["name"], check["target"], fmt_measured(check["measured"]), met, check.get("note", ""))
    return table


def print_all(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=160)
    ingestion = results.get("ingestion")
    if ingestion and ingestion.get("cells"):
        console.print(ingestion_table(ingestion["cells"], ingestion["ratios"]))
    queries = results.get("queries")
    if queries and queries.get("results"):
        console.print(queries_table(queries["results"]))
    operator = results.get("operator")
    if operator:
        console.print(operator_table(operator))
    for part in ("ingestion", "queries", "operator"):
        skipped = (results.get(part) or {}).get("skipped")
        if skipped:
            console.print(f"[yellow]{part} skipped:[/yellow] {skipped}")
    if results.get("targets"):
        console.print(targets_table(results["targets"]))


def write(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
