"""Options every client command shares (--url, --token, --format), declared once so help and env vars agree."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from outrider.cli import client, output

Url = Annotated[
    str,
    typer.Option("--url", envvar="OUTRIDER_URL", help="Control plane base URL.", show_default=True),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="OUTRIDER_TOKEN", help="API bearer token (or OUTRIDER_TOKEN).", show_default=False),
]
FormatOpt = Annotated[
    output.Format,
    typer.Option("--format", "-o", case_sensitive=False, help="table for people, json for machines (pure JSON)."),
]

Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-N", help="Only this namespace (tenant); a key bound to namespaces sees only those anyway."),
]

DEFAULT_URL = client.DEFAULT_URL

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``24h``/``30m``/``7d`` (ago) or an RFC 3339 time; a bad value is a usage error (exit 2)."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration like 24h, 30m, 7d nor an RFC 3339 time", param_hint="--since"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
