"""``outrider runs list``, ``show`` and ``watch``: the run history and one run followed live, for people (tables)
and agents (JSON).

``runs list --format json`` prints a ``Page[RunRecord]`` (``items`` and the ``next_cursor`` left over);
``runs show --format json`` prints one ``RunRecord``. ``--fail-on-failed`` makes a failed run in the listing
exit 1, so a CI job or an agent can gate on "did anything fail in the last 24h". ``runs watch`` follows one run
until it finishes (its new events as they arrive, and its status, stage and progress when they change) and exits 0
if it succeeded, 1 if it failed or was cancelled; with ``--format json`` it prints one JSON object per line.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from outrider.cli import client, events, options, output
from outrider.control_plane import schemas

app = typer.Typer(help="Run history: list runs, show one run, watch one run live.", no_args_is_help=True, rich_markup_mode=None)


#: Lines of a failed run's traceback ``runs show`` prints (its end, where the error is).
TRACEBACK_LINES = 20
#: Below this many columns the runs table is drawn compact.
NARROW = 110


def _tokens(run: dict[str, Any]) -> str:
    usage = run.get("llm_usage")
    if not usage:
        return output.DASH
    total = usage["total"]
    return output.number(total["input_tokens"] + total["output_tokens"])


def _cost(run: dict[str, Any]) -> str:
    usage = run.get("llm_usage")
    return output.money(usage["total"]["cost_usd"]) if usage else output.DASH


@app.command("list")
def list_runs(
    target: Annotated[str | None, typer.Option("--target", "-t", help="Only runs of this target.")] = None,
    status: Annotated[schemas.RunStatus | None, typer.Option("--status", "-s", case_sensitive=False, help="Only runs in this status.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only runs created in this window (24h, 30m, 7d) or after an RFC 3339 time.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000, help="Most runs to list (newest first).")] = 50,
    fail_on_failed: Annotated[bool, typer.Option("--fail-on-failed", help="Exit 1 when a listed run failed.")] = False,
    namespace: options.Namespace = None,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """List runs, newest first."""
    after = options.since(since)
    params = {
        "target": target,
        "status": status.value if status else None,
        "since": after.isoformat() if after else None,
        "namespace": namespace,
    }
    try:
        with output.spinner("Fetching runs…"), client.Client(url, token) as api:
            items, cursor = api.pages("/v1/runs", params, limit)
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    if fmt == output.Format.JSON:
        output.print_json({"items": items, "next_cursor": cursor})
    else:
        # A narrow terminal (80 columns) gets a lighter frame and relative creation times, so every header fits.
        narrow = output.stdout().width < NARROW
        title = f"Runs ({len(items)}{'+' if cursor else ''})"
        table = (Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
                 if narrow else Table(title=title, title_justify="left"))
        tenants = len({run.get("namespace") for run in items}) > 1 or any(run.get("namespace") != "default" for run in items)
        columns = (("NAMESPACE",) if tenants else ()) + ("RUN", "TARGET", "STATUS", "CREATED", "DURATION", "TOKENS", "COST", "PRS", "ERROR")
        output.add_columns(table, columns, wrap=("ERROR",))
        for run in items:
            table.add_row(
                *((output.esc(run.get("namespace")),) if tenants else ()),
                output.esc(run["run_id"]),
                output.esc(run.get("target")),
                output.styled(run["status"]),
                output.ago(run.get("created_at")) if narrow else output.stamp(run.get("created_at")),
                output.short_duration(run.get("duration_seconds")),
                _tokens(run),
                _cost(run),
                str(run.get("pr_count", 0)),
                output.esc(run.get("error_summary")),
            )
        console = output.stdout()
        if items:
            console.print(table)
        else:
            console.print("No runs match.")
        if cursor:
            output.stderr().print("(more runs exist; raise --limit to see them)")
    if fail_on_failed and any(run["status"] == schemas.RunStatus.FAILED for run in items):
        raise typer.Exit(client.EXIT_FAILURE_FOUND)


@app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    namespace: options.Namespace = None,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Show one run: status, timings, stages, LLM usage, PRs and error (--namespace when several have it)."""
    run = output.fetch(f"run {run_id}", f"/v1/runs/{run_id}", url, token, fmt, {"namespace": namespace})
    if fmt == output.Format.JSON:
        output.print_json(run)
        return
    console = output.stdout()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("Run", output.esc(run["run_id"]))
    facts.add_row("Namespace", output.esc(run.get("namespace")))
    facts.add_row("Target", output.esc(run.get("target")))
    facts.add_row("Status", output.styled(run["status"]))
    facts.add_row("Created", output.stamp(run.get("created_at")))
    facts.add_row("Started", output.stamp(run.get("started_at")))
    facts.add_row("Completed", output.stamp(run.get("completed_at")))
    facts.add_row("Duration", output.short_duration(run.get("duration_seconds")))
    facts.add_row("Tokens", _tokens(run))
    facts.add_row("Cost", _cost(run))
    facts.add_row("Events", str(run.get("event_count", 0)))
    if run.get("error_summary"):
        facts.add_row("Error", f"[red]{output.esc(run['error_summary'])}[/red]")
    console.print(facts)

    timings = (run.get("metrics") or {}).get("phase_timings") or {}
    if timings:
        stages = Table(title="Stages", title_justify="left")
        for column in ("STAGE", "STARTED", "DURATION"):
            stages.add_column(column)
        for name, timing in _in_order(timings):
            stages.add_row(output.esc(name), output.stamp(timing.get("started_at")), output.short_duration(timing.get("duration_seconds")))
        console.print(stages)

    usage = run.get("llm_usage")
    if usage:
        llm = Table(title="LLM usage", title_justify="left")
        for column in ("BY", "KEY", "CALLS", "INPUT", "OUTPUT", "COST"):
            llm.add_column(column)
        for by in ("by_phase", "by_model"):
            for key, group in usage.get(by, {}).items():
                llm.add_row(by[3:], output.esc(key), str(group.get("calls", 0)), output.number(group["input_tokens"]),
                            output.number(group["output_tokens"]), output.money(group.get("cost_usd")))
        console.print(llm)

    prs = run.get("pull_requests") or []
    if prs:
        table = Table(title="Pull requests", title_justify="left")
        for column in ("NUMBER", "URL", "MERGED"):
            table.add_column(column)
        for pr in prs:
            table.add_row(f"#{pr['number']}", output.esc(pr["url"]), "yes" if pr.get("merged") else "no")
        console.print(table)
    notes = (run.get("metrics") or {}).get("notes") or []
    for note in notes:
        console.print(f"[dim]note: {output.esc(note)}[/dim]")
    if run["status"] == "failed":
        failures = output.fetch("the failure", "/v1/events", url, token, fmt,
                                {"run_id": run_id, "type": "run.failed", "namespace": run.get("namespace"), "limit": 10})
        tracebacks = [str(item["event"]["data"]["traceback"]) for item in failures["items"]
                      if (item["event"].get("data") or {}).get("traceback")]
        if tracebacks:
            lines = tracebacks[-1].rstrip().splitlines()
            omitted = f", {len(lines) - TRACEBACK_LINES} earlier lines omitted" if len(lines) > TRACEBACK_LINES else ""
            console.print(f"[bold]Traceback[/bold] (last {min(len(lines), TRACEBACK_LINES)} lines{omitted})")
            console.print(output.esc("\n".join(lines[-TRACEBACK_LINES:])), style="red", soft_wrap=True)


@app.command("summary")
def summary(
    window: Annotated[str, typer.Option("--window", "-w", help="How far back: e.g. 24h, 7d.")] = "24h",
    target: Annotated[str | None, typer.Option("--target", "-t", help="Only this target's runs.")] = None,
    namespace: options.Namespace = None,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Runs created in a window: counts by status, success rate, durations, tokens, cost, PRs, the latest failure."""
    document = output.fetch("run summary", "/v1/runs/summary", url, token, fmt,
                            {"window": window, "target": target, "namespace": namespace})
    if fmt == output.Format.JSON:
        output.print_json(document)
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("Window", f"{output.esc(document['window'])} (since {output.stamp(document['since'])})"
                  + (f", target {output.esc(document['target'])}" if document.get("target") else ""))
    facts.add_row("Runs", f"{document['total']}: " + ", ".join(f"{count} {output.styled(status)}"
                                                             for status, count in document["counts"].items() if count))
    rate = document["success_rate"]
    facts.add_row("Success rate", output.DASH if rate is None else f"{rate * 100:.1f}%")
    facts.add_row("Duration p50 / p95", f"{output.short_duration(document['duration_p50_seconds'])} / "
                                        f"{output.short_duration(document['duration_p95_seconds'])}")
    facts.add_row("Tokens", f"{output.number(document['input_tokens'])} in · {output.number(document['output_tokens'])} out")
    facts.add_row("Cost", output.money(document["cost_usd"]))
    facts.add_row("PRs", str(document["pr_count"]))
    failure = document.get("latest_failure")
    if failure:
        facts.add_row("Latest failure", f"{output.esc(failure.get('run_id'))}: [red]{output.esc(failure.get('error_summary'))}[/red]")
    output.stdout().print(facts)


def _in_order(timings: dict[str, Any]) -> list[tuple[str, Any]]:
    """Stages in the order the run entered them (never-started ones last), not by name."""
    return sorted(timings.items(), key=lambda item: (item[1].get("started_at") is None, output.parse_time(item[1].get("started_at"))
                                                     or output.parse_time("1970-01-01T00:00:00Z"), item[0]))


TERMINAL = ("succeeded", "failed", "cancelled")


def _now_line(run: dict[str, Any], progress: dict[str, Any] | None) -> str:
    """One line: status, elapsed, current stage and its latest progress as reported."""
    parts = [run["status"]]
    started = output.parse_time(run.get("started_at"))
    if run["status"] in TERMINAL:
        parts.append(f"after {output.short_duration(run.get('duration_seconds'))}")
    elif started is not None:
        parts.append(f"for {output.short_duration((datetime.now(UTC) - started).total_seconds())}")
    open_stages = [(timing.get("started_at") or "", name) for name, timing in ((run.get("metrics") or {}).get("phase_timings") or {}).items()
                   if timing.get("started_at") and timing.get("duration_seconds") is None]
    if open_stages and run["status"] not in TERMINAL:
        parts.append(f"stage {max(open_stages)[1]}")
    if progress is not None and run["status"] not in TERMINAL:
        data = progress.get("data") or {}
        bound = data.get("max_iterations")
        text = f"iteration {data.get('iteration')}" + (f"/{bound}" if bound is not None else "")
        if isinstance(bound, int) and bound > 0 and isinstance(data.get("iteration"), int):
            text += f" ({100 * data['iteration'] / bound:.0f}%)"
        parts.append(text)
    return " · ".join(parts)


@app.command("watch")
def watch_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run id.")],
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between looks.")] = 2.0,
    namespace: options.Namespace = None,
    fmt: options.FormatOpt = output.Format.TABLE,
    url: options.Url = options.DEFAULT_URL,
    token: options.Token = None,
) -> None:
    """Follow one run until it finishes: new events as they arrive, status/stage/progress when they change.
    Exits 0 if it succeeded, 1 if it failed or was cancelled."""
    params = {"run_id": run_id, "namespace": namespace}
    cursor: str | None = None  # the last page boundary the server gave; the page after it is read again each look
    seen = 0  # the highest seq printed
    shown = ""
    progress: dict[str, Any] | None = None
    try:
        with client.Client(url, token) as api:
            while True:
                run = api.get(f"/v1/runs/{run_id}", {"namespace": namespace})
                while True:  # every event since the last look, oldest first
                    page = api.get("/v1/events", {**params, "limit": 1000, "cursor": cursor})
                    for stored in page["items"]:
                        if stored["seq"] <= seen:
                            continue
                        seen = stored["seq"]
                        if stored["event"].get("type") == "run.progress":
                            progress = stored["event"]
                        if fmt == output.Format.JSON:
                            output.print_json_line({"event": stored})
                        else:
                            event = stored["event"]
                            output.stdout().print(f"{output.stamp(event.get('time'))}  [bold]{output.esc(event.get('type'))}[/bold]  "
                                                  f"{output.esc(events.describe(stored))}")
                    if page.get("next_cursor") is None:
                        break
                    cursor = page["next_cursor"]
                line = _now_line(run, progress)
                if line != shown:
                    shown = line
                    if fmt == output.Format.JSON:
                        output.print_json_line({"run": run})
                    else:
                        output.stdout().print(f"[bold]▶ {output.esc(run['run_id'])}[/bold] {output.styled(run['status'])} "
                                              f"{output.esc(line.split(' · ', 1)[1]) if ' · ' in line else ''}")
                if run["status"] in TERMINAL:
                    raise typer.Exit(client.EXIT_OK if run["status"] == "succeeded" else client.EXIT_FAILURE_FOUND)
                time.sleep(interval)
    except client.CliError as error:
        raise output.fail(error, fmt) from None
    except KeyboardInterrupt:
        raise typer.Exit(client.EXIT_OK) from None
