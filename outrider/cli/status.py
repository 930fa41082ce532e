"""``outrider status`` and ``outrider targets``: the system status and each Target, as the control plane sees them.

Both read ``GET /v1/status`` / ``GET /v1/targets``, which are computed by the one status function the console
uses too (``outrider.control_plane.status``), so the terminal and the browser never disagree. JSON output is the
``SystemStatus`` model and a list of ``TargetState`` models (docs/api.md).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from outrider.cli import options, output


def _autonomy_line(autonomy: dict[str, Any]) -> str:
    enabled = autonomy.get("enabled")
    if enabled is None:
        return "[dim]unknown (nothing reported yet)[/dim]"
    word = "[green]enabled[/green]" if enabled else "[yellow]paused[/yellow]"
    parts = [word]
    if autonomy.get("mode"):
        parts.append(f"(mode {output.esc(autonomy['mode'])})")
    if autonomy.get("since"):
        parts.append(f"since {output.stamp(autonomy['since'])} ({output.ago(autonomy['since'])})")
    if autonomy.get("reason"):
        parts.append(f"— {output.esc(autonomy['reason'])}")
    return " ".join(parts)


def render_status(document: dict[str, Any]) -> None:
    console = output.stdout()
    state = document["state"]
    blocked = ", ".join(document.get("blocked_by") or [])
    title = output.styled(state)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("Status", title + (f" ({blocked})" if blocked else ""))
    grid.add_row("Reason", output.esc(document["reason"]))
    grid.add_row("Action", output.esc(document["action"]))
    grid.add_row("Autonomy", _autonomy_line(document.get("autonomy") or {}))
    operator = document.get("operator") or {}
    if operator.get("last_heartbeat_at"):
        period = operator.get("heartbeat_seconds")
        beat = f"last heartbeat {output.ago(operator['last_heartbeat_at'])}" + (f" (every {period:g}s)" if period else "")
        grid.add_row("Operator", ("[red]stale: [/red]" if operator.get("stale") else "") + beat)
    else:
        grid.add_row("Operator", "[red]no heartbeat yet[/red]" if operator.get("stale") is not None else output.DASH)
    targets = document.get("targets")
    if targets:
        grid.add_row(
            "Targets",
            f"{targets['active']} active, {targets['blocked']} blocked, {targets['paused']} paused (of {targets['total']})",
        )
    else:
        grid.add_row("Targets", output.DASH)
    open_prs, max_prs = document.get("open_prs"), document.get("max_open_prs")
    prs = output.DASH if open_prs is None else f"{open_prs}/{max_prs}"
    if open_prs is not None and max_prs and open_prs >= max_prs:
        prs += " [yellow](MAX REACHED)[/yellow]"
    grid.add_row("Open PRs", prs)
    grid.add_row("Ready runs", output.number(document.get("pending_runs")))
    grid.add_row("Active runs", output.number(document.get("active_runs")))
    last = document.get("last_execution_at")
    grid.add_row("Last execution", f"{output.ago(last)}" if last else output.DASH)
    console.print(grid)
    activity = document.get("recent_activity") or []
    if activity:
        table = Table(title="Recent activity", title_justify="left")
        for column in ("WHEN", "", "WHAT", "TARGET"):
            table.add_column(column)
        marks = {"ok": "[green]✓[/green]", "error": "[red]✗[/red]", "warning": "[yellow]![/yellow]", "info": "[blue]·[/blue]"}
        for item in activity[:10]:
            table.add_row(output.ago(item["time"]), marks.get(item["severity"], ""), output.esc(item["summary"]),
                          output.esc(item.get("target")))
        console.print(table)


def render_targets(items: list[dict[str, Any]]) -> None:
    console = output.stdout()
    if not items:
        console.print("No Target has reported its status yet.")
        return
    table = Table(title=f"Targets ({len(items)})", title_justify="left")
    for column in ("TARGET", "HEALTH", "BREAKER", "FAILURES", "COOLDOWN", "ACTIVE", "PENDING", "OPEN-PRS", "REASON", "REPORTED"):
        table.add_column(column, no_wrap=column != "REASON")
    for t in items:
        remaining = t.get("cooldown_remaining_seconds")
        cooldown = output.DASH if remaining is None else ("ended" if remaining <= 0 else output.short_duration(remaining))
        table.add_row(
            output.esc(t["target"]),
            output.styled(t["health"]),
            output.styled(t["breaker_state"]),
            str(t["consecutive_failures"]),
            cooldown,
            f"{t['active_runs']}/{t['max_concurrent_runs']}",
            str(t["pending_runs"]),
            f"{output.DASH if t.get('open_prs') is None else t['open_prs']}/{t['max_open_prs']}",
            output.esc(t.get("health_reason")),
            output.ago(t.get("reported_at")),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status(
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """The system status: healthy, idle, blocked or error, with the reason and the action to take."""
        document = output.fetch("status", "/v1/status", url, token, fmt)
        if fmt == output.Format.JSON:
            output.print_json(document)
        else:
            render_status(document)

    @app.command("targets")
    def targets(
        fmt: options.FormatOpt = output.Format.TABLE,
        url: options.Url = options.DEFAULT_URL,
        token: options.Token = None,
    ) -> None:
        """Every Target with its health, circuit breaker (and cooldown), runs and open PRs."""
        items = output.fetch("targets", "/v1/targets", url, token, fmt)
        if fmt == output.Format.JSON:
            output.print_json(items)
        else:
            render_targets(items)
