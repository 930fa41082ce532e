"""``outrider trends``, ``outrider models`` and ``outrider errors``: success, tokens and cost over time,
per-model performance, and where runs fail.

Each prints what ``GET /v1/analytics/trends`` / ``models`` / ``errors`` answers: a table for people
(missing figures as "—", never 0), or with ``--format json`` the API document unchanged, for agents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from outrider.cli import options, output

WindowOpt = Annotated[str, typer.Option("--window", "-w", help="How far back: e.g. 24h, 7d, 2w.")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t", help="Only this target.")]


def percent(value: float | None) -> str:
    return output.DASH if value is None else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    return output.DASH if value is None else f"{value:.2f}s"


def count(value: float | None) -> str:
    return output.DASH if value is None else f"{value:,.0f}"


def render_trends(document: dict[str, Any]) -> None:
    title = f"Trends over {output.esc(document['window'])} by {output.esc(document['bucket'])}"
    if document.get("target"):
        title += f" for {output.esc(document['target'])}"
    table = Table(title=title, title_justify="left")
    output.add_columns(table, ("BUCKET", "STARTED", "FINISHED", "OK", "FAILED", "SUCCESS", "ROLLING", "TOKENS/OK RUN", "PRS",
                               "COST", "COST/PR", "TRIPS"))
    for bucket in document["buckets"]:
        table.add_row(
            output.stamp(bucket["start"]),
            str(bucket["runs_started"]),
            str(bucket["runs_finished"]),
            str(bucket["succeeded"]),
            str(bucket["failed"]),
            percent(bucket["success_rate"]),
            percent(bucket["rolling_success_rate"]),
            count(bucket["tokens_per_successful_run"]),
            str(bucket["prs"]),
            output.money(bucket["cost_usd"]),
            output.money(bucket["cost_per_pr_usd"]),
            str(bucket["breaker_trips"]),
        )
    output.stdout().print(table)


def render_models(document: dict[str, Any]) -> None:
    console = output.stdout()
    if not document["models"]:
        console.print(f"No LLM calls in the last {output.esc(document['window'])}.")
        return
    table = Table(title=f"Models over {output.esc(document['window'])}", title_justify="left")
    output.add_columns(table, ("PROVIDER", "MODEL", "CALLS", "ERRORS", "P50", "P95", "P99", "TOKENS/CALL", "COST", "RUNS", "RUN SUCCESS"))
    for row in document["models"]:
        table.add_row(
            output.esc(row["provider"]),
            output.esc(row["model"]),
            str(row["calls"]),
            percent(row["error_rate"]),
            seconds(row["latency_p50_seconds"]),
            seconds(row["latency_p95_seconds"]),
            seconds(row["latency_p99_seconds"]),
            count(row["tokens_per_call"]),
            output.money(row["cost_usd"]),
            str(row["runs"]),
            percent(row["run_success_rate"]),
        )
    console.print(table)


def render_errors(document: dict[str, Any]) -> None:
    console = output.stdout()
    summary = (f"{document['failed']} of {document['finished']} runs created in the last {output.esc(document['window'])} "
               f"and finished failed ({percent(document['failure_rate'])})")
    if not document["groups"]:
        console.print(summary + ".")
        return
    table = Table(title=summary + f", by {output.esc(document['by'])}", title_justify="left")
    output.add_columns(table, (document["by"].upper().replace("_", " "), "FAILED", "FINISHED", "RATE"))
    for group in document["groups"]:
        table.add_row(output.DASH if group["key"] is None else output.esc(group["key"]), str(group["failed"]),
                      count(group["finished"]), percent(group["rate"]))
    console.print(table)


def _show(what: str, path: str, params: dict[str, Any], render: Callable[[dict[str, Any]], None], fmt: output.Format,
          url: str, token: str | None) -> None:
    """GET one analytics document: unchanged with --format json, else as ``render`` draws it."""
    document = output.fetch(what, path, url, token, fmt, params=params)
    if fmt == output.Format.JSON:
        output.print_json(document)
    else:
        render(document)


def register(app: typer.Typer) -> None:
    @app.command("trends")
    def trends(
        window: WindowOpt = "7d",
        bucket: Annotated[str, typer.Option("--bucket", "-b", help="Bucket size, e.g. 1h, 1d.")] = "1d",
        target: TargetOpt = None,
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """Runs, success rate, tokens per successful run, cost per PR and breaker trips per time bucket."""
        _show("trends", "/v1/analytics/trends", {"window": window, "bucket": bucket, "target": target}, render_trends, fmt, url, token)

    @app.command("models")
    def models(
        window: WindowOpt = "7d",
        target: TargetOpt = None,
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """Per provider/model: calls, error rate, latency percentiles, tokens per call, cost, success of its runs."""
        _show("model analytics", "/v1/analytics/models", {"window": window, "target": target}, render_models, fmt, url, token)

    @app.command("errors")
    def errors(
        window: WindowOpt = "24h",
        by: Annotated[str, typer.Option("--by", "-b", help="Group by target, error_type or stage.")] = "target",
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """Failed runs in a window, grouped by target, error type or stage, with failure rates."""
        _show("error analytics", "/v1/analytics/errors", {"window": window, "by": by}, render_errors, fmt, url, token)
