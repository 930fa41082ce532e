"""Kubernetes-style status conditions: set one, keep its lastTransitionTime unless its status flips.

Conditions are what the operator writes; a Run's ``phase``/``reason``/``message`` and a Target's ``health`` are
display fields derived from them here (:func:`run_display`, :func:`target_health`), so the two never disagree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from outrider.common import k8s, timefmt


def set_condition(existing: list[dict[str, Any]] | None, *, type_: str, status: bool | None, reason: str,
                  message: str, now: dt.datetime, generation: int | None) -> list[dict[str, Any]]:
    """The condition list with ``type_`` set; others kept as they are. ``status`` None means Unknown.

    ``generation`` is the spec generation the condition was decided from; None (the writer did not read the spec,
    and none was read before) leaves ``observedGeneration`` out, as metav1.Condition allows."""
    text = "Unknown" if status is None else ("True" if status else "False")
    out: list[dict[str, Any]] = []
    previous = None
    for cond in existing or []:
        if cond.get("type") == type_:
            previous = cond
        else:
            out.append(dict(cond))
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == text else None
    condition: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or timefmt.format_time(now),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    out.append(condition)
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


def active(existing: list[dict[str, Any]] | None, *, reason: str, message: str, now: dt.datetime,
           generation: int | None) -> list[dict[str, Any]]:
    """``Succeeded=Unknown`` with where an active Run is (Pending, Running, Stalled): the summary condition is
    there from the first visit, as the API conventions ask, and turns True/False when the Run finishes."""
    return set_condition(existing, type_=k8s.CONDITION_SUCCEEDED, status=None, reason=reason, message=message, now=now,
                         generation=generation)


def _is(condition: dict[str, Any] | None, status: str) -> bool:
    return condition is not None and condition.get("status") == status


def run_display(existing: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A Run's ``phase``, ``reason`` and ``message``, read off its conditions (first match wins):

    ``Succeeded`` True → Succeeded; False → Cancelled for a cancel reason (JobDeleted), else Failed; ``Admitted``
    False → Pending (held, with the hold reason); ``Running`` True → Running; ``Admitted`` True → Admitted. The
    reason and message are those of the condition that decided. No condition yet: all three null."""
    succeeded = get(existing, k8s.CONDITION_SUCCEEDED)
    admitted = get(existing, k8s.CONDITION_ADMITTED)
    running = get(existing, k8s.CONDITION_RUNNING)
    if _is(succeeded, "True"):
        phase, source = k8s.PHASE_SUCCEEDED, succeeded
    elif _is(succeeded, "False"):
        cancelled = (succeeded or {}).get("reason") in k8s.CANCELLED_REASONS
        phase, source = (k8s.PHASE_CANCELLED if cancelled else k8s.PHASE_FAILED), succeeded
    elif _is(admitted, "False"):
        phase, source = k8s.PHASE_PENDING, admitted
    elif _is(running, "True"):
        phase, source = k8s.PHASE_RUNNING, running
    elif _is(admitted, "True"):
        phase, source = k8s.PHASE_ADMITTED, admitted
    else:
        return {"phase": None, "reason": None, "message": None}
    assert source is not None
    return {"phase": phase, "reason": source.get("reason"), "message": source.get("message")}


def target_health(existing: list[dict[str, Any]] | None) -> str | None:
    """A Target's ``health`` word, read off its ``Ready`` condition's reason (k8s.HEALTH_BY_REASON); null if unset."""
    ready = get(existing, k8s.CONDITION_READY)
    return k8s.HEALTH_BY_REASON.get(str((ready or {}).get("reason"))) if ready is not None else None
