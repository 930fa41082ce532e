"""Trends, model performance and the run graph: pure functions over rows the store returns (no I/O here).

Kept apart from ``analytics.py`` (window summaries) because these figures are bucketed in time, grouped by
model or shaped as a graph; each is tested on its own against hand computation. Every ratio is null when
its denominator is zero, and every average null when nothing was measured: never a 0 stand-in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from outrider.control_plane import analytics, projection
from outrider.control_plane.store import rollups

#: Most buckets one trends answer may have.
MAX_BUCKETS = 2000
LEVELS = ("debug", "info", "warning", "error", "critical")


def bucket_start(now: datetime, window: timedelta, bucket: timedelta) -> datetime:
    """Start of the first bucket: (now − window) rounded down to a multiple of ``bucket`` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    size = int(bucket.total_seconds())
    offset = int((now - window - epoch).total_seconds()) // size * size
    return epoch + timedelta(seconds=offset)


def trends(
    started: dict[int, int],
    finished: list[tuple[int, str, int, int, int, int, int]],
    trips: list[datetime],
    *,
    start: datetime,
    now: datetime,
    bucket: timedelta,
) -> list[dict[str, Any]]:
    """One ``TrendBucket`` per bucket from ``start`` to the one holding ``now``, from ``Store.trend_cells``
    (see docs/api.md for each figure)."""
    size = bucket.total_seconds()
    count = int((now - start).total_seconds() // size) + 1
    cells = [
        {"started": started.get(index, 0), "finished": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "tokens_ok": 0,
         "cost": 0, "priced": 0, "prs": 0, "trips": 0}
        for index in range(count)
    ]
    for index, status, runs, tokens, cost, priced, prs in finished:
        if not 0 <= index < count or status not in projection.TERMINAL:
            continue
        cell = cells[index]
        cell["finished"] += runs
        cell[status] += runs
        if status == "succeeded":
            cell["tokens_ok"] += tokens
        cell["cost"] += cost
        cell["priced"] += priced
        cell["prs"] += prs
    for moment in trips:
        index = int((moment - start).total_seconds() // size)
        if 0 <= index < count:
            cells[index]["trips"] += 1
    out = []
    total_ok = total_finished = 0
    for index, cell in enumerate(cells):
        total_ok += cell["succeeded"]
        total_finished += cell["finished"]
        out.append(
            {
                "start": start + bucket * index,
                "end": start + bucket * (index + 1),
                "runs_started": cell["started"],
                "runs_finished": cell["finished"],
                "succeeded": cell["succeeded"],
                "failed": cell["failed"],
                "cancelled": cell["cancelled"],
                "success_rate": analytics.ratio(cell["succeeded"], cell["finished"]),
                "rolling_success_rate": analytics.ratio(total_ok, total_finished),
                "tokens_per_successful_run": analytics.ratio(cell["tokens_ok"], cell["succeeded"]),
                "prs": cell["prs"],
                "cost_usd": cell["cost"] / projection.NANO if cell["priced"] else None,
                "cost_per_pr_usd": cell["cost"] / projection.NANO / cell["prs"] if cell["priced"] and cell["prs"] else None,
                "breaker_trips": cell["trips"],
            }
        )
    return out


def models(facts: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``ModelStats`` per (provider, model) from ``Store.model_facts``, most calls first."""
    out = []
    for (provider, model), group in facts.items():
        runs = group["runs"]
        finished = sum(count for status, count in runs.items() if status in projection.TERMINAL)
        succeeded = runs.get("succeeded", 0)
        failed = runs.get("failed", 0)
        latencies = group["latency_buckets"]
        calls = group["calls"]
        out.append(
            {
                "provider": provider,
                "model": model,
                "calls": calls,
                "error_calls": group["errors"],
                "error_rate": analytics.ratio(group["errors"], calls),
                "latency_samples": sum(latencies),
                "latency_p50_seconds": rollups.percentile(latencies, 50),
                "latency_p95_seconds": rollups.percentile(latencies, 95),
                "latency_p99_seconds": rollups.percentile(latencies, 99),
                "input_tokens": group["input_tokens"],
                "output_tokens": group["output_tokens"],
                "tokens_per_call": analytics.ratio(group["input_tokens"] + group["output_tokens"], calls),
                "cost_usd": group["cost_nano_usd"] / projection.NANO if group["priced"] else None,
                "runs": sum(runs.values()),
                "runs_finished": finished,
                "runs_succeeded": succeeded,
                "runs_failed": failed,
                "run_success_rate": analytics.ratio(succeeded, finished),
                "run_failure_rate": analytics.ratio(failed, finished),
            }
        )
    out.sort(key=lambda row: (-row["calls"], row["provider"], row["model"]))
    return out


def graph(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and edges of the run graph of ``records`` (oldest first): targets → tasks → runs → PRs.

    Edge kinds: ``task`` (target → task), ``run`` (task → run, or target → run when the run names no task),
    ``pr`` (run → PR), ``retry`` (a run → the next run of the same task, when the earlier one did not
    succeed), ``probe`` (target → the run admitted as its half-open breaker probe).
    """
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    seen_edges: set[tuple[str, str, str]] = set()

    def node(node_id: str, kind: str, label: str, status: str | None) -> str:
        nodes[node_id] = {"id": node_id, "kind": kind, "label": label, "status": status}
        return node_id

    def edge(source: str, target: str, kind: str) -> None:
        if (source, target, kind) not in seen_edges:
            seen_edges.add((source, target, kind))
            edges.append({"source": source, "target": target, "kind": kind})

    last_of_task: dict[str, dict[str, Any]] = {}
    for rec in records:
        target = rec["target"] or ""
        target_id = f"target:{target}"
        if target_id not in nodes:
            node(target_id, "target", target or "(no target)", None)
        run_id = node(f"run:{rec['run_id']}", "run", rec["run_id"], rec["status"])
        if rec.get("task_id"):
            task_id = f"task:{target}/{rec['task_id']}"
            known = nodes.get(task_id)
            title = rec.get("task_title") or (known["label"] if known else None) or rec["task_id"]
            node(task_id, "task", title, rec["status"])  # a task's title: any run's; its status: its latest run's
            edge(target_id, task_id, "task")
            edge(task_id, run_id, "run")
            previous = last_of_task.get(task_id)
            if previous is not None and previous["status"] != "succeeded":
                edge(f"run:{previous['run_id']}", run_id, "retry")
            last_of_task[task_id] = rec
        else:
            edge(target_id, run_id, "run")
        if rec.get("probe"):
            edge(target_id, run_id, "probe")
        for pr in rec["pull_requests"]:
            pr_id = f"pr:{target}#{pr['number']}"
            merged = pr["merged"] or (pr_id in nodes and nodes[pr_id]["status"] == "merged")
            node(pr_id, "pr", f"#{pr['number']}", "merged" if merged else "open")
            edge(run_id, pr_id, "pr")
    return list(nodes.values()), edges


def log_lines(stored: list[tuple[int, datetime, str]], minimum: str) -> list[dict[str, Any]]:
    """``run.log`` events as log lines, keeping those at or above ``minimum``."""
    floor = LEVELS.index(minimum)
    out = []
    for seq, _received, body in stored:
        event = json.loads(body)
        data = event.get("data") or {}
        level = data.get("level")
        if level in LEVELS and LEVELS.index(level) >= floor:
            out.append({"seq": seq, "time": event["time"], "level": level, "message": data.get("message", ""), "source": event["source"]})
    return out
