"""Folding a run's events into its run record: pure functions, no I/O.

Events arrive late, twice or out of order, so the fold is a commutative merge, not "apply in arrival
order": every field of :data:`RunState` is a min, a max, a sum, a count or a set union, keyed where a
choice is needed by the event's (time, source, id). Folding the same set of events in any order gives the
same state, and :func:`record` derives the API record from the state alone. Duplicates never reach the
fold: the store only folds events it has newly inserted (idempotency on (source, id)).

Rules (also in docs/api.md):

- ``created_at``: earliest ``run.created``; else the earliest event of the run.
- ``started_at``: earliest ``run.started``; else the earliest stage or progress event.
- ``status``: the event of highest lifecycle rank wins (queued < admitted < running < terminal); among
  equals, the latest (time, source, id). ``completed_at`` is the winning terminal event's time.
- ``duration_seconds``: completed_at − (started_at, else created_at); null while unfinished or when negative.
- token and cost sums; ``phase_timings``: earliest stage start, latest stage completion per stage.
- ``retries``: count of ``run.retry``; ``llm_calls``: count of ``run.llm_usage``.
- ``error_summary`` from the latest ``run.failed``, only when the status is failed.
- pull requests from ``pr.created`` / ``pr.merged``, keyed by number.
- ``task``: from the earliest ``run.created``'s ``data.task.id`` (``data.task.title`` as its title) or
  ``data.task_id``; ``probe``: any ``run.admitted`` with ``data.probe`` true.
- ``artifacts`` from ``run.artifact``, keyed by ``data.key``; the latest (time, source, id) per key wins.
- Unknown event types change nothing, not even ``event_count``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from outrider.common import events

T = events.EventType

#: Lifecycle rank and resulting status of each event type that moves a run's status (plain strings as keys: a
#: dict of str keys only is looked up on the projector's hot path faster than one of enum members).
STATUS_OF: dict[str, tuple[int, str]] = {
    T.RUN_CREATED.value: (0, "queued"),
    T.RUN_ADMITTED.value: (1, "admitted"),
    T.RUN_STARTED.value: (2, "running"),
    T.RUN_STAGE_STARTED.value: (2, "running"),
    T.RUN_STAGE_COMPLETED.value: (2, "running"),
    T.RUN_PROGRESS.value: (2, "running"),
    T.RUN_LLM_USAGE.value: (2, "running"),
    T.RUN_RETRY.value: (2, "running"),
    T.RUN_SUCCEEDED.value: (3, "succeeded"),
    T.RUN_FAILED.value: (3, "failed"),
    T.RUN_CANCELLED.value: (3, "cancelled"),
}
TERMINAL = ("succeeded", "failed", "cancelled")
#: Types that describe one run and therefore fold into its record.
RUN_TYPES = frozenset(t.value for t in T if t.value.startswith(events.RUN_SCOPED_PREFIXES))
NANO = 1_000_000_000
SUMMARY_MAX = 200

#: The mergeable fold state of one run, stored as JSON in ``runs.state``.
RunState = dict[str, Any]


def iso(moment: datetime) -> str:
    """A fixed-width UTC timestamp: string order equals time order, so keys compare as strings."""
    text = moment.isoformat(timespec="microseconds")
    if text.endswith("+00:00"):  # the usual case (UTC): formatting once costs less than converting first
        return text
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def empty_state() -> RunState:
    return {
        "target": None,  # [key, target] of the earliest event that names one
        "created": None,  # earliest run.created time
        "started": None,  # earliest run.started time
        "first_activity": None,  # earliest stage/progress time
        "earliest": None,
        "latest": None,
        "status": None,  # [rank, key, status] of the winning status event
        "terminals": {},  # terminal status -> count of such events
        "failure": None,  # [key, error_type, stage, message] of the latest run.failed
        "usage": {"phase": {}, "model": {}},  # group -> [input, output, cost_nano, priced_calls, calls]
        "retries": 0,
        "llm_calls": 0,
        "stages": {},  # stage -> [earliest start, latest completion]
        "prs": {},  # number -> [min key, url, created, merged]
        "event_count": 0,
        "task": None,  # [key, task id, title] of the earliest run.created that names a task
        "probe": False,  # admitted as the half-open breaker's probe
        "artifacts": {},  # key -> [event key, kind, bytes, sha256, url]
        "stalled": None,  # latest run.stalled time: the watchdog's word, not activity (so not in earliest/latest)
        "requeued": None,  # latest run.requeued time (drained back to waiting)
        "last_admit": None,  # latest run.admitted time
        "last_start": None,  # latest run.started time
    }


def _min(a: Any, b: Any) -> Any:
    return b if a is None or (b is not None and b < a) else a


def _max(a: Any, b: Any) -> Any:
    return b if a is None or (b is not None and b > a) else a


def is_run_event(event: events.CloudEvent) -> bool:
    """Whether the event folds into a run record: a known run-scoped type with a run id."""
    return bool(event.runid) and event.type in RUN_TYPES


def fold(state: RunState, event: events.CloudEvent) -> RunState:
    """A new state with ``event`` merged in; ``state`` is not modified. Non-run events change nothing."""
    new = copy.deepcopy(state)
    merge_into(new, event)
    return new


#: The types :func:`merge_into` tests, as plain strings: each lookup of an enum member cost ~0.1 µs, a dozen
#: of them for some events, on the projector's hot path.
_PR_CREATED = T.PR_CREATED.value
_PR_MERGED = T.PR_MERGED.value
_RUN_ADMITTED = T.RUN_ADMITTED.value
_RUN_ARTIFACT = T.RUN_ARTIFACT.value
_RUN_CREATED = T.RUN_CREATED.value
_RUN_FAILED = T.RUN_FAILED.value
_RUN_LLM_USAGE = T.RUN_LLM_USAGE.value
_RUN_PROGRESS = T.RUN_PROGRESS.value
_RUN_REQUEUED = T.RUN_REQUEUED.value
_RUN_RETRY = T.RUN_RETRY.value
_RUN_STAGE_COMPLETED = T.RUN_STAGE_COMPLETED.value
_RUN_STAGE_STARTED = T.RUN_STAGE_STARTED.value
_RUN_STALLED = T.RUN_STALLED.value
_RUN_STARTED = T.RUN_STARTED.value
_STAGE_TYPES = frozenset((_RUN_STAGE_STARTED, _RUN_STAGE_COMPLETED, _RUN_PROGRESS))
_PR_TYPES = frozenset((_PR_CREATED, _PR_MERGED))


def merge_into(new: RunState, event: events.CloudEvent, when: str | None = None) -> bool:
    """Merge ``event`` into ``new`` in place (the store's hot path); False when the event is not a run event.

    ``when``: ``iso(event.time)`` when the caller has it already (the store computes it once per event)."""
    kind = event.type
    if not event.runid or kind not in RUN_TYPES:  # is_run_event, inline: the writer runs this once per event
        return False
    if when is None:
        when = iso(event.time)
    key = [when, event.source, event.id]
    data = event.data
    new["event_count"] += 1
    if kind == _RUN_STALLED:
        new["stalled"] = _max(new.get("stalled"), when)
        return True
    # _min / _max written out below: the same comparisons without a call each.
    earliest = new["earliest"]
    if earliest is None or when < earliest:
        new["earliest"] = when
    latest = new["latest"]
    if latest is None or when > latest:
        new["latest"] = when
    target = event.target
    if target:
        current = new["target"]
        if current is None or [key, target] < current:
            new["target"] = [key, target]

    moves = STATUS_OF.get(kind)
    if moves is not None:
        rank, status = moves
        current = new["status"]
        if current is None or rank >= current[0]:  # a lower rank never wins: skip building the entry
            entry = [rank, key, status]
            if current is None or entry > current:
                new["status"] = entry
        if rank == 3:
            new["terminals"][status] = new["terminals"].get(status, 0) + 1
    if kind == _RUN_CREATED:
        new["created"] = _min(new["created"], when)
        task = task_of(data)
        if task is not None:
            new["task"] = _min(new.get("task"), [key, *task])
    elif kind == _RUN_ADMITTED:
        new["probe"] = bool(new.get("probe")) or data.get("probe") is True
        new["last_admit"] = _max(new.get("last_admit"), when)
    elif kind == _RUN_STARTED:
        new["started"] = _min(new["started"], when)
        new["last_start"] = _max(new.get("last_start"), when)
    elif kind == _RUN_REQUEUED:
        new["requeued"] = _max(new.get("requeued"), when)
    elif kind in _STAGE_TYPES:
        new["first_activity"] = _min(new["first_activity"], when)
        stage = str(data.get("stage"))
        start, end = new["stages"].get(stage, [None, None])
        if kind == _RUN_STAGE_STARTED:
            start = _min(start, when)
        elif kind == _RUN_STAGE_COMPLETED:
            end = _max(end, when)
        new["stages"][stage] = [start, end]
    elif kind == _RUN_RETRY:
        new["retries"] += 1
    elif kind == _RUN_LLM_USAGE:
        new["llm_calls"] += 1
        cost = data.get("cost_usd")
        nano = round(float(cost) * NANO) if cost is not None else 0
        input_tokens, output_tokens, priced = int(data["input_tokens"]), int(data["output_tokens"]), int(cost is not None)
        phase = data.get("phase") or "unknown"
        model = f"{data['provider']}/{data['model']}"
        usage = new["usage"]
        for group, name in (("phase", phase), ("model", model)):
            old = usage[group].get(name)
            if old is None:
                usage[group][name] = [input_tokens, output_tokens, nano, priced, 1]
            else:
                usage[group][name] = [old[0] + input_tokens, old[1] + output_tokens, old[2] + nano, old[3] + priced, old[4] + 1]
    elif kind == _RUN_FAILED:
        message = data.get("message")
        new["failure"] = _max(new["failure"], [key, data.get("error_type"), data.get("stage"), message])
    elif kind == _RUN_ARTIFACT:
        artifacts = new.setdefault("artifacts", {})
        entry = [key, str(data["kind"]), data.get("bytes"), data.get("sha256"), data.get("url")]
        artifacts[str(data["key"])] = _max(artifacts.get(str(data["key"])), entry)
    elif kind in _PR_TYPES:
        number = str(int(data["number"]))
        first, url, created, merged = new["prs"].get(number, [None, None, False, False])
        if first is None or key < first:
            first, url = key, str(data["url"])
        created = created or kind == _PR_CREATED
        merged = merged or kind == _PR_MERGED
        new["prs"][number] = [first, url, created, merged]
    return True


def task_of(data: dict[str, Any]) -> tuple[str, str | None] | None:
    """(task id, title) named by a ``run.created``'s data: ``task.id`` (the operator's spec.task) or ``task_id``."""
    task = data.get("task")
    if isinstance(task, dict) and isinstance(task.get("id"), str) and task["id"]:
        title = task.get("title")
        return task["id"][:253], (title[:1024] if isinstance(title, str) else None)
    task_id = data.get("task_id")
    if isinstance(task_id, str) and task_id:
        return task_id[:253], None
    return None


def error_summary(error_type: str | None, stage: str | None, message: str | None) -> str:
    """'<error_type> in <stage>: <first line of message>', shortened to at most 200 characters."""
    head = error_type or "Error"
    if stage:
        head += f" in {stage}"
    first_line = (message or "").strip().splitlines()[0].strip() if (message or "").strip() else ""
    text = f"{head}: {first_line}" if first_line else head
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _usage(values: list[int]) -> dict[str, Any]:
    input_tokens, output_tokens, nano, priced, calls = values
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": nano / NANO if priced else None,
        "calls": calls,
    }


def _sum(groups: dict[str, list[int]]) -> list[int]:
    input_tokens = output_tokens = nano = priced = calls = 0
    for a, b, c, d, e in groups.values():
        input_tokens += a
        output_tokens += b
        nano += c
        priced += d
        calls += e
    return [input_tokens, output_tokens, nano, priced, calls]


def _outcome(state: RunState) -> tuple[str, datetime | None, datetime | None, datetime | None, float | None,
                                       str | None, str | None, str | None]:
    """(status, created, started, completed, duration_seconds, error_type, error_stage, error_summary) of a fold
    state: the derivations :func:`record` and :func:`columns` share. A duration is None when the terminal event
    is earlier than the start."""
    status_entry = state["status"]
    status = status_entry[2] if status_entry else "queued"
    requeued = state.get("requeued")
    if requeued is not None and status not in TERMINAL and requeued > (state.get("last_start") or ""):
        # Drained back to waiting and not started since: admitted again, or still waiting.
        status = "admitted" if (state.get("last_admit") or "") > requeued else "queued"
    created = parse(state["created"] or state["earliest"])
    started = parse(state["started"] or state["first_activity"])
    completed = parse(status_entry[1][0]) if status_entry and status in TERMINAL else None
    duration = None
    if completed is not None:
        begin = started or created
        if begin is not None:
            seconds = (completed - begin).total_seconds()
            if seconds >= 0:
                duration = seconds
    failure = state["failure"]
    summary = error_type = error_stage = None
    if status == "failed" and failure is not None:
        _, error_type, error_stage, message = failure
        summary = error_summary(error_type, error_stage, message)
    return status, created, started, completed, duration, error_type, error_stage, summary


def _stalled_since(state: RunState, status: str) -> datetime | None:
    """When the watchdog last found the run silent, while it still is (no event of the run since) and runs."""
    stalled = state.get("stalled")
    if stalled is None or status != "running" or (state["latest"] is not None and state["latest"] > stalled):
        return None
    return parse(stalled)


def record(run_id: str, state: RunState, namespace: str = "default") -> dict[str, Any]:
    """The run record (``schemas.RunRecord`` shape) derived from a fold state."""
    status, created, started, completed, duration, error_type, error_stage, summary = _outcome(state)
    notes: list[str] = []
    if state["created"] is None:
        notes.append("no run.created event received; created_at is the earliest event's time")
    if completed is not None:
        if state["started"] is None and state["first_activity"] is None:
            notes.append("finished without any start event; duration counts from created_at")
        if (started or created) is not None and duration is None:
            notes.append("the terminal event is earlier than the start; duration unknown")
    terminals = state["terminals"]
    if sum(terminals.values()) > 1:
        seen = ", ".join(f"{name} ×{count}" for name, count in sorted(terminals.items()))
        notes.append(f"several terminal events ({seen}); the latest by time decides the status")

    phases: dict[str, dict[str, Any]] = {}
    for stage in sorted(state["stages"]):
        start, end = state["stages"][stage]
        took = None
        if start is not None and end is not None:
            took = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            if took < 0:
                took = None
                notes.append(f"stage {stage} completed before it started; duration unknown")
        phases[stage] = {"started_at": parse(start), "duration_seconds": took}

    usage = state["usage"]
    llm_usage = None
    if state["llm_calls"]:
        llm_usage = {
            "total": _usage(_sum(usage["model"])),
            "by_phase": {name: _usage(values) for name, values in sorted(usage["phase"].items())},
            "by_model": {name: _usage(values) for name, values in sorted(usage["model"].items())},
        }
    prs = [
        {"number": int(number), "url": url, "merged": merged}
        for number, (_, url, _created, merged) in sorted(state["prs"].items(), key=lambda item: int(item[0]))
    ]
    return {
        "namespace": namespace,
        "run_id": run_id,
        "target": state["target"][1] if state["target"] else None,
        "status": status,
        "created_at": created,
        "started_at": started,
        "completed_at": completed,
        "duration_seconds": duration,
        "error_summary": summary,
        "error_type": error_type,
        "error_stage": error_stage,
        "metrics": {
            "phase_timings": phases,
            "resource_breakdown": {"llm_calls": state["llm_calls"], "retries": state["retries"]},
            "notes": notes,
        },
        "llm_usage": llm_usage,
        "pull_requests": prs,
        "pr_count": len(prs),
        "event_count": state["event_count"],
        "last_event_at": parse(state["latest"]),
        "task_id": state["task"][1] if state.get("task") else None,
        "task_title": state["task"][2] if state.get("task") else None,
        "probe": bool(state.get("probe")),
        "stalled_since": _stalled_since(state, status),
        "artifacts": [
            {"key": name, "kind": kind, "bytes": size, "sha256": digest, "url": url, "reported_at": parse(entry_key[0])}
            for name, (entry_key, kind, size, digest, url) in sorted((state.get("artifacts") or {}).items())
        ],
    }


def columns(run_id: str, state: RunState, namespace: str = "default") -> dict[str, Any]:
    """The ``runs`` table's query columns for a fold state (everything else stays in the state JSON).

    The same values as the fields of :func:`record` with these names, computed without building the whole
    record: the store calls this for every run a group commit changes."""
    status, created, started, completed, duration, error_type, error_stage, summary = _outcome(state)
    total = _sum(state["usage"]["model"])
    return {
        "namespace": namespace,
        "run_id": run_id,
        "target": state["target"][1] if state["target"] else None,
        "status": status,
        "created_at": created,
        "started_at": started,
        "completed_at": completed,
        "duration_seconds": duration,
        "error_summary": summary,
        "error_type": error_type,
        "error_stage": error_stage,
        "input_tokens": total[0],
        "output_tokens": total[1],
        "cost_nano_usd": total[2] if total[3] else None,
        "llm_calls": state["llm_calls"],
        "pr_count": len(state["prs"]),
        "event_count": state["event_count"],
        "last_event_at": parse(state["latest"]),
    }
