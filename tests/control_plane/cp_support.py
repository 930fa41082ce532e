"""Helpers the control-plane tests share: a token, and builders of CloudEvents and whole run lifecycles."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

TOKEN = "test-token-" + "x" * 20
BASE_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

_ids = itertools.count(1)


def event(
    kind: str,
    run: str | None = "run-1",
    *,
    at: float = 0.0,
    target: str | None = "acme/web",
    data: dict[str, Any] | None = None,
    id: str | None = None,
    source: str = "/workers/pod-1",
) -> dict[str, Any]:
    """A CloudEvent as JSON; ``at`` is seconds after BASE_TIME."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or f"evt-{next(_ids)}",
        "source": source,
        "type": kind,
        "time": (BASE_TIME + timedelta(seconds=at)).isoformat().replace("+00:00", "Z"),
        "data": data or {},
    }
    if target is not None:
        body["target"] = target
    if run is not None:
        body["runid"] = run
    return body


def lifecycle(run: str, target: str = "acme/web", *, fail: bool = False, start: float = 0.0) -> list[dict[str, Any]]:
    """The events of one whole run: created, admitted, started, two stages, LLM usage, retry, PR, the end."""
    t = start
    events = [
        event("run.created", run, at=t, target=target),
        event("run.admitted", run, at=t + 1, target=target),
        event("run.started", run, at=t + 2, target=target),
        event("run.stage.started", run, at=t + 3, target=target, data={"stage": "plan"}),
        event("run.llm_usage", run, at=t + 4, target=target, data={
            "provider": "anthropic", "model": "claude", "phase": "plan",
            "input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.012, "latency_s": 1.5,
        }),
        event("run.stage.completed", run, at=t + 10, target=target, data={"stage": "plan"}),
        event("run.stage.started", run, at=t + 11, target=target, data={"stage": "code"}),
        event("run.progress", run, at=t + 12, target=target, data={"stage": "code", "iteration": 1, "max_iterations": 5}),
        event("run.llm_usage", run, at=t + 13, target=target, data={
            "provider": "anthropic", "model": "claude", "phase": "code",
            "input_tokens": 3000, "output_tokens": 700, "cost_usd": 0.04,
        }),
        event("run.retry", run, at=t + 14, target=target),
        event("run.log", run, at=t + 15, target=target, data={"level": "info", "message": "tests pass"}),
    ]
    if fail:
        events.append(event("run.failed", run, at=t + 62, target=target, data={
            "error_type": "TimeoutError", "stage": "code", "message": "tests timed out after 60s\nTraceback ...",
        }))
    else:
        events.append(event("run.stage.completed", run, at=t + 40, target=target, data={"stage": "code"}))
        events.append(event("pr.created", run, at=t + 41, target=target, data={"number": 7, "url": "https://example.test/pr/7"}))
        events.append(event("run.succeeded", run, at=t + 42, target=target))
    return events


BATCH = {"Content-Type": "application/cloudevents-batch+json"}
SINGLE = {"Content-Type": "application/cloudevents+json"}
