"""How client commands print: pure JSON for machines, Rich tables for people, spinners only on a terminal.

``--format json`` writes exactly one JSON document (or one per line for streams) to stdout with no colour
codes, in the shapes of the API models (docs/api.md), so an AI agent or ``jq`` can read it. Human output goes
through Rich; messages and spinners go to stderr so they never mix with data.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from outrider.cli import client


class Format(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


DASH = "—"

#: Rich styles per status word, shared by every table.
STYLES = {
    "succeeded": "green", "healthy": "green", "Healthy": "green", "Closed": "green", "ok": "green",
    "running": "cyan", "admitted": "cyan", "queued": "blue", "idle": "blue", "Idle": "blue", "info": "blue",
    "failed": "red", "error": "red", "Failed": "red", "Open": "red",
    "cancelled": "yellow", "blocked": "yellow", "Blocked": "yellow", "HalfOpen": "yellow", "Paused": "yellow",
    "warning": "yellow",
}


def add_columns(table: Any, columns: tuple[str, ...] | list[str], *, wrap: tuple[str, ...] = ()) -> None:
    """Columns whose headers are never cut (at least as wide as their name, e.g. DURATION, not DURA), on one line
    each; the ``wrap`` columns (free text) take what is left and fold."""
    for column in columns:
        if column in wrap:
            table.add_column(column, overflow="fold", ratio=1, min_width=len(column))
        else:
            table.add_column(column, no_wrap=True, min_width=len(column))


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """One JSON document on stdout, no colour, newline-terminated."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A Rich spinner on stderr while waiting, only when stderr is a terminal: really one, not one that
    FORCE_COLOR or TTY_COMPATIBLE declare (those make Rich treat a pipe as a terminal)."""
    console = stderr()
    context = console.status(message) if console.is_terminal and sys.stderr.isatty() else nullcontext()
    with context:
        yield


def fail(error: client.CliError, fmt: Format = Format.TABLE) -> typer.Exit:
    """Report ``error`` on stderr (as JSON with --format json) and build the exit to raise."""
    if fmt == Format.JSON:
        sys.stderr.write(json.dumps({"error": error.message, "exit_code": error.exit_code, "detail": error.body}) + "\n")
    else:
        stderr().print(f"[red]error:[/red] {escape(error.message)}")
    return typer.Exit(error.exit_code)


def esc(value: object) -> str:
    """User data for a Rich cell: markup characters escaped, '—' when missing."""
    return DASH if value is None or value == "" else escape(str(value))


def styled(word: str | None) -> str:
    if word is None:
        return DASH
    style = STYLES.get(word)
    return f"[{style}]{word}[/{style}]" if style else word


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(value: str | None, now: datetime | None = None) -> str:
    """'3m ago' from an RFC 3339 string; '—' when missing."""
    moment = parse_time(value)
    if moment is None:
        return DASH
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return "in " + short_duration(-seconds)
    return short_duration(seconds) + " ago"


def short_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def number(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def money(value: float | None) -> str:
    if value is None:
        return DASH
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def stamp(value: str | None) -> str:
    """A compact UTC timestamp for tables."""
    moment = parse_time(value)
    return DASH if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fetch(what: str, path: str, url: str, token: str | None, fmt: Format, params: dict[str, Any] | None = None) -> Any:
    """GET one control-plane document behind a spinner; any failure exits with its documented code and message."""
    try:
        with spinner(f"Fetching {what}…"), client.Client(url, token) as api:
            return api.get(path, params)
    except client.CliError as error:
        raise fail(error, fmt) from None
