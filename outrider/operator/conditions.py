"""Kubernetes-style status conditions: set one, keep its lastTransitionTime unless its status flips."""

from __future__ import annotations

import datetime as dt
from typing import Any

from outrider.common import k8s, timefmt


def set_condition(existing: list[dict[str, Any]] | None, *, type_: str, status: bool | None, reason: str,
                  message: str, now: dt.datetime, generation: int) -> list[dict[str, Any]]:
    """The condition list with ``type_`` set; others kept as they are. ``status`` None means Unknown."""
    text = "Unknown" if status is None else ("True" if status else "False")
    out: list[dict[str, Any]] = []
    previous = None
    for cond in existing or []:
        if cond.get("type") == type_:
            previous = cond
        else:
            out.append(dict(cond))
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == text else None
    out.append({
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or timefmt.format_time(now),
        "observedGeneration": generation,
    })
    return sorted(out, key=lambda c: str(c.get("type")))


def get(existing: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for cond in existing or []:
        if cond.get("type") == type_:
            return cond
    return None


def rebase(base: list[dict[str, Any]] | None, mine: list[dict[str, Any]], theirs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``theirs`` (the list the server has now) with the conditions ``mine`` changed from ``base`` (the view it was
    built on) applied: a write from a stale view keeps what others set meanwhile. Order: theirs, then new types."""
    before = {c.get("type"): c for c in base or []}
    merged = {c.get("type"): c for c in theirs or []}
    for condition in mine:
        if before.get(condition.get("type")) != condition:
            merged[condition.get("type")] = condition
    return list(merged.values())


def active(existing: list[dict[str, Any]] | None, *, reason: str, message: str, now: dt.datetime, generation: int) -> list[dict[str, Any]]:
    """``Succeeded=Unknown`` with where an active Run is (Pending, Running, Stalled): the summary condition is
    there from the first visit, as the API conventions ask, and turns True/False when the Run finishes."""
    return set_condition(existing, type_=k8s.CONDITION_SUCCEEDED, status=None, reason=reason, message=message, now=now,
                         generation=generation)
