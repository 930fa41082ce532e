"""RFC 3339 times as Kubernetes writes them (UTC, whole seconds, ``Z``), read leniently: one helper for the
operator's status fields, conditions, Job timings and budgets, instead of each module keeping its own."""

from __future__ import annotations

import datetime as dt
from typing import Any


def parse_time(value: Any) -> dt.datetime | None:
    """An aware UTC datetime from an RFC 3339 string (``Z`` or an offset; naive means UTC); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime | None) -> str | None:
    """``2026-12-05T12:00:00Z``: UTC, whole seconds (what ``metav1.Time`` holds); None for None."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
