"""The console's insight pages: Trends (server-drawn SVG charts), Models (a table) and the run Graph.

A separate router from ``console/router.py`` (which holds the dashboard and run pages) so each page family
stays small; it reuses that module's auth, rendering and formatting. Figures come from the same pure
functions as ``/v1/analytics/*`` and ``/v1/graph/*`` (``insights``), so the console, API and CLI agree.
Charts are plain SVG built here: no JavaScript, no build step, no CDN, nothing the CSP would block.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import markupsafe
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from outrider.common import events
from outrider.control_plane import analytics, errors, insights, params, store
from outrider.control_plane.console import router as console

router = APIRouter(include_in_schema=False)

#: (window, bucket) choices offered on the Trends page.
TREND_CHOICES = {"24h": "1h", "7d": "1d", "30d": "1d", "90d": "1w"}
MODEL_WINDOWS = ("24h", "7d", "30d", "90d")
CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 720, 200, 44, 22, 10


def _filters(request: Request, default_window: str) -> tuple[str, str | None, list[str]]:
    query = request.query_params
    window = (query.get("window") or default_window).strip()
    target = (query.get("target") or "").strip() or None
    problems = []
    try:
        params.window(window)
    except errors.APIError:
        problems.append(f"Unknown window {window!r}; showing {default_window}.")
        window = default_window
    return window, target, problems


def _svg(title: str, series: list[tuple[str, list[float | None]]], labels: list[str], *, kind: str, top: float | None, fmt: str) -> markupsafe.Markup:
    """A bar (stacked) or line chart as an accessible SVG; None values are gaps, never drawn as 0."""
    count = max(len(labels), 1)
    width = (CHART_W - PAD_L) / count
    plot_h = CHART_H - PAD_B - PAD_T
    if top is None:
        if kind == "bar":
            totals = [sum(values[i] or 0 for _, values in series) for i in range(len(labels))]
        else:
            totals = [v for _, values in series for v in values if v is not None]
        top = max(totals, default=0) or 1.0
    esc = markupsafe.escape

    def y(value: float) -> float:
        return PAD_T + plot_h - plot_h * value / top

    parts = [f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{esc(title)}"><title>{esc(title)}</title>']
    for fraction in (0, 0.5, 1):
        level = y(top * fraction)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{CHART_W}" y1="{level:.1f}" y2="{level:.1f}"></line>')
        parts.append(f'<text class="axis" x="{PAD_L - 4}" y="{level + 4:.1f}" text-anchor="end">{esc(fmt.format(top * fraction))}</text>')
    step = max(1, count // 8)
    for index, label in enumerate(labels):
        if index % step == 0:
            if index == len(labels) - 1:  # the last label ends at the chart's edge instead of running past it
                parts.append(f'<text class="axis" x="{CHART_W - 2}" y="{CHART_H - 6}" text-anchor="end">{esc(label)}</text>')
            else:
                parts.append(f'<text class="axis" x="{PAD_L + width * index + width / 2:.1f}" y="{CHART_H - 6}" text-anchor="middle">{esc(label)}</text>')
    for series_index, (name, values) in enumerate(series):
        css = f"s{series_index}"
        if kind == "bar":
            for index, value in enumerate(values):
                if not value:
                    continue
                below = sum(series[j][1][index] or 0 for j in range(series_index))
                x = PAD_L + width * index + 1
                parts.append(
                    f'<rect class="bar {css}" x="{x:.1f}" y="{y(below + value):.1f}" width="{max(width - 2, 1):.1f}" '
                    f'height="{y(below) - y(below + value):.1f}"><title>{esc(labels[index])} {esc(name)}: {esc(fmt.format(value))}</title></rect>'
                )
        else:
            run: list[str] = []
            for index, value in enumerate([*values, None]):
                if value is None:
                    if run:
                        parts.append(f'<polyline class="line {css}" points="{" ".join(run)}"></polyline>')
                    run = []
                    continue
                cx, cy = PAD_L + width * index + width / 2, y(value)
                run.append(f"{cx:.1f},{cy:.1f}")
                parts.append(f'<circle class="dot {css}" cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>{esc(labels[index])} {esc(name)}: {esc(fmt.format(value))}</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key s{i}">{esc(name)}</span>' for i, (name, _) in enumerate(series))
    return markupsafe.Markup(f'<figure class="chart-box chart-{kind}"><figcaption>{esc(title)} <span class="legend">{legend}</span></figcaption>{"".join(parts)}</figure>')


def pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _trend_page(st: store.Store, window: str, bucket: str, target: str | None, scope: store.Scope) -> dict[str, Any]:
    span, size = params.window(window), params.window(bucket)
    now = datetime.now(UTC)
    start = insights.bucket_start(now, span, size)
    started, finished = st.trend_cells(start, int(size.total_seconds()), target, scope)
    trips = st.event_times(events.EventType.TARGET_BREAKER_TRIPPED, start, target, scope)
    buckets = insights.trends(started, finished, trips, start=start, now=now, bucket=size)
    fmt = "%m-%d %H:%M" if size.total_seconds() < 86400 else "%m-%d"
    labels = [b["start"].strftime(fmt) for b in buckets]
    charts = [
        _svg("Runs finished", [("succeeded", [b["succeeded"] for b in buckets]), ("failed", [b["failed"] for b in buckets]),
                               ("cancelled", [b["cancelled"] for b in buckets])], labels, kind="bar", top=None, fmt="{:g}"),
        _svg("Success rate (%)", [("per bucket", [pct(b["success_rate"]) for b in buckets]),
                                  ("rolling", [pct(b["rolling_success_rate"]) for b in buckets])], labels, kind="line", top=100, fmt="{:.0f}%"),
        _svg("Tokens per successful run", [("tokens", [b["tokens_per_successful_run"] for b in buckets])], labels, kind="line", top=None, fmt="{:,.0f}"),
        _svg("Cost per PR (USD)", [("cost per PR", [b["cost_per_pr_usd"] for b in buckets])], labels, kind="line", top=None, fmt="${:.2f}"),
        _svg("Breaker trips", [("trips", [b["breaker_trips"] for b in buckets])], labels, kind="bar", top=None, fmt="{:g}"),
    ]
    return {"buckets": buckets, "charts": charts}


@router.get("/trends", response_class=HTMLResponse)
async def trends_page(request: Request) -> Response:
    if not await console._reader(request):
        return console._login_redirect(request)
    window, target, problems = _filters(request, "7d")
    if window not in TREND_CHOICES:
        problems.append(f"Window {window!r} is not offered here; showing 7d.")
        window = "7d"
    found = await asyncio.to_thread(_trend_page, console._store(request), window, TREND_CHOICES[window], target,
                                    console._scope(request))
    return console._render(request, "trends.html", {
        "title": "Trends", "window": window, "bucket": TREND_CHOICES[window], "target": target or "",
        "windows": list(TREND_CHOICES), "problems": problems, **found,
    })


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request) -> Response:
    if not await console._reader(request):
        return console._login_redirect(request)
    window, target, problems = _filters(request, "7d")
    since = datetime.now(UTC) - params.window(window)
    rows = await asyncio.to_thread(console._store(request).model_facts, since, target, console._scope(request))
    return console._render(request, "models.html", {
        "title": "Models", "window": window, "target": target or "", "windows": list(MODEL_WINDOWS),
        "problems": problems, "models": insights.models(rows),
    })


ERROR_GROUPINGS = {"target": "Target", "error_type": "Error type", "stage": "Stage"}


@router.get("/errors", response_class=HTMLResponse)
async def errors_page(request: Request) -> Response:
    """Where runs fail: the failed runs of those created in the window, grouped three ways (GET /v1/analytics/errors),
    and the failures per bucket over the window (the Trends rollup)."""
    if not await console._reader(request):
        return console._login_redirect(request)
    window, target, problems = _filters(request, "7d")
    since = datetime.now(UTC) - params.window(window)
    st, scope = console._store(request), console._scope(request)
    if target:
        scope = scope.only_target(target)
    groups = {by: await asyncio.to_thread(st.finished_groups, since, analytics.GROUP_COLUMNS[by], scope) for by in ERROR_GROUPINGS}
    trend = await asyncio.to_thread(_trend_page, st, window if window in TREND_CHOICES else "7d",
                                    TREND_CHOICES.get(window, "1d"), target, console._scope(request))
    tables = {by: analytics.errors(found, window, since, by) for by, found in groups.items()}
    buckets = trend["buckets"]
    labels = [b["start"].strftime("%m-%d %H:%M" if TREND_CHOICES.get(window, "1d") == "1h" else "%m-%d") for b in buckets]
    finished = [b["succeeded"] + b["failed"] + b["cancelled"] for b in buckets]
    charts = [
        _svg("Failed runs", [("failed", [b["failed"] for b in buckets])], labels, kind="bar", top=None, fmt="{:g}"),
        _svg("Failure rate (%)", [("failed / finished", [100 * b["failed"] / n if n else None for b, n in zip(buckets, finished, strict=True)])],
             labels, kind="line", top=100, fmt="{:.0f}%"),
    ]
    return console._render(request, "errors.html", {
        "title": "Errors", "window": window, "target": target or "", "windows": list(MODEL_WINDOWS), "problems": problems,
        "groupings": ERROR_GROUPINGS, "tables": tables, "overall": tables["target"], "charts": charts,
    })


GRAPH_RUNS = 2000


def _tree(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The graph as nested lists: target → tasks (and runs without a task) → runs → PRs, with retry/probe marks."""
    nodes, edges = insights.graph(records)
    by_id = {node["id"]: node for node in nodes}
    children: dict[str, list[str]] = {}
    marks: dict[str, list[str]] = {}
    for edge in edges:
        if edge["kind"] in ("task", "run", "pr"):
            children.setdefault(edge["source"], []).append(edge["target"])
        elif edge["kind"] == "retry":
            marks.setdefault(edge["target"], []).append(f"retry of {by_id[edge['source']]['label']}")
        elif edge["kind"] == "probe":
            marks.setdefault(edge["target"], []).append("breaker probe")

    def build(node_id: str) -> dict[str, Any]:
        return {**by_id[node_id], "marks": marks.get(node_id, []), "children": [build(c) for c in children.get(node_id, [])]}

    return [build(node["id"]) for node in nodes if node["kind"] == "target"]


@router.get("/graph", response_class=HTMLResponse)
async def graph_page(request: Request) -> Response:
    if not await console._reader(request):
        return console._login_redirect(request)
    window, target, problems = _filters(request, "7d")
    since = datetime.now(UTC) - params.window(window)
    records = await asyncio.to_thread(console._store(request).graph_runs, since, target, GRAPH_RUNS + 1, console._scope(request))
    return console._render(request, "graph.html", {
        "title": "Run Graph", "window": window, "target": target or "", "windows": list(MODEL_WINDOWS),
        "problems": problems, "tree": _tree(records[:GRAPH_RUNS]), "truncated": len(records) > GRAPH_RUNS,
        "limit": GRAPH_RUNS,
    })
