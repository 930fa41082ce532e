"""Realistic event traffic for the benchmarks: the same bytes go to every server under test.

Each run emits the sequence a worker really sends (created, started, stages with progress, LLM usage,
logs, a PR, and a terminal event), so the real store pays its real projection cost; ids are unique per
generator (``prefix``), because the control plane deduplicates on (source, id).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

#: One run's events, in order: (type, data). 20 events per run.
RUN_SCRIPT: list[tuple[str, dict[str, Any]]] = [
    ("run.created", {}),
    ("run.admitted", {}),
    ("run.started", {}),
    ("run.stage.started", {"stage": "plan"}),
    (
        "run.llm_usage",
        {
            "provider": "anthropic",
            "model": "claude-sonnet",
            "phase": "plan",
            "input_tokens": 1200,
            "output_tokens": 300,
            "cost_usd": 0.0081,
            "latency_s": 2.4,
        },
    ),
    ("run.stage.completed", {"stage": "plan"}),
    ("run.stage.started", {"stage": "code"}),
    ("run.progress", {"stage": "code", "iteration": 1, "max_iterations": 5}),
    (
        "run.llm_usage",
        {
            "provider": "anthropic",
            "model": "claude-sonnet",
            "phase": "code",
            "input_tokens": 5400,
            "output_tokens": 2100,
            "cost_usd": 0.0477,
            "latency_s": 9.1,
        },
    ),
    ("run.log", {"level": "info", "message": "applied patch to 3 files"}),
    ("run.progress", {"stage": "code", "iteration": 2, "max_iterations": 5}),
    (
        "run.llm_usage",
        {
            "provider": "anthropic",
            "model": "claude-sonnet",
            "phase": "code",
            "input_tokens": 6100,
            "output_tokens": 1500,
            "cost_usd": 0.0408,
            "latency_s": 7.7,
        },
    ),
    ("run.stage.completed", {"stage": "code"}),
    ("run.stage.started", {"stage": "test"}),
    ("run.log", {"level": "warning", "message": "2 flaky tests retried"}),
    ("run.retry", {}),
    ("run.stage.completed", {"stage": "test"}),
    ("pr.created", {"number": 1, "url": "https://example.invalid/pr/1"}),
    ("run.log", {"level": "info", "message": "opened pull request"}),
    ("run.succeeded", {}),
]

FAILED_TAIL: tuple[str, dict[str, Any]] = (
    "run.failed",
    {"error_type": "TestFailure", "message": "3 tests failed\nsee log", "stage": "test"},
)


def event(
    *, event_id: str, type_: str, data: dict[str, Any], run_id: str, target: str, time: datetime
) -> dict[str, Any]:
    """One CloudEvent as a worker would post it."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/workers/{target}",
        "type": type_,
        "time": time.isoformat(),
        "target": target,
        "runid": run_id,
        "data": data,
    }


def run_events(
    run_id: str, target: str, start: datetime, *, failed: bool = False, id_prefix: str = ""
) -> list[dict[str, Any]]:
    """All events of one run, a few seconds apart, starting at ``start``."""
    script = RUN_SCRIPT[:-1] + [FAILED_TAIL] if failed else RUN_SCRIPT
    return [
        event(
            event_id=f"{id_prefix}{run_id}-{n}",
            type_=type_,
            data=data,
            run_id=run_id,
            target=target,
            time=start + timedelta(seconds=7 * n),
        )
        for n, (type_, data) in enumerate(script)
    ]


def event_stream(prefix: str, targets: int = 50, *, random_ids: bool = False) -> Iterator[bytes]:
    """An endless stream of encoded events, run after run, each id unique under ``prefix``.

    Each run's events are encoded once as templates and filled in by byte replacement: the client must
    spend as little CPU per event as possible (see ``loadgen``).

    Ids are ``<prefix>-r<run>-<n>`` by default: like the worker SDK's ``<session>-<n>`` (``outrider.client``), one
    producer's ids share a prefix. ``random_ids``: random UUIDv4 text instead, what the CloudEvents SDKs generate
    (``str(uuid.uuid4())``); the store's (source, id) index then takes each key at a random place (docs/performance.md).
    """
    now = datetime.now(UTC)
    templates = {
        failed: [
            _random_id_template(json.dumps(item, separators=(",", ":")).encode(), item["id"]) if random_ids
            else json.dumps(item, separators=(",", ":")).encode()
            for item in run_events("@RUN@", "@TGT@", now, failed=failed)
        ]
        for failed in (False, True)
    }
    ids = _random_uuids() if random_ids else None
    for run_number in itertools.count():
        run_id = f"{prefix}-r{run_number}".encode()
        target = f"org/repo-{run_number % targets}".encode()
        for template in templates[run_number % 5 == 4]:
            event = template.replace(b"@RUN@", run_id).replace(b"@TGT@", target)
            yield event if ids is None else event.replace(b"@ID@", next(ids))


def _random_id_template(template: bytes, event_id: str) -> bytes:
    """A template whose id is the placeholder ``@ID@``."""
    return template.replace(b'"id":"' + event_id.encode() + b'"', b'"id":"@ID@"', 1)


def _random_uuids(per_draw: int = 1000) -> Iterator[bytes]:
    """Random version-4 UUIDs as text, cheaply: one ``os.urandom`` per ``per_draw`` ids (``uuid.uuid4`` per event
    would cost the client more CPU than some servers spend on the event)."""
    while True:
        digits = os.urandom(16 * per_draw).hex()
        for start in range(0, len(digits), 32):
            h = digits[start : start + 32]
            yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}".encode()


def request_maker(
    prefix: str, batch: int | None, build: Callable[[bytes], bytes], *, random_ids: bool = False
) -> Callable[[], tuple[bytes, int]]:
    """A ``make_request`` for the load generator: a single event (``batch=None``) or a JSON array of ``batch``.

    ``build(body)`` wraps the body into request bytes (method, path, headers); ``random_ids``: see :func:`event_stream`.
    """
    stream = event_stream(prefix, random_ids=random_ids)

    def make() -> tuple[bytes, int]:
        if batch is None:
            return build(next(stream)), 1
        return build(b"[" + b",".join(itertools.islice(stream, batch)) + b"]"), batch

    return make


def long_run_events(
    run_id: str, target: str, start: datetime, count: int, *, failed: bool = False
) -> list[dict[str, Any]]:
    """One run with ``count`` events (at least the 20 of the script): the script with extra progress and
    log events in its ``code`` stage, as a long agent loop produces them. Events are 7 s apart."""
    script = RUN_SCRIPT[:-1] + [FAILED_TAIL] if failed else list(RUN_SCRIPT)
    extra: list[tuple[str, dict[str, Any]]] = []
    for n in range(max(0, count - len(script))):
        if n % 2:
            extra.append(("run.log", {"level": "info", "message": f"iteration {n // 2 + 3}: edited files, ran tests"}))
        else:
            extra.append(("run.progress", {"stage": "code", "iteration": n // 2 + 3}))
    cut = 11  # after the second code-stage LLM call
    script = script[:cut] + extra + script[cut:]
    return [
        event(
            event_id=f"{run_id}-{n}",
            type_=type_,
            data=data,
            run_id=run_id,
            target=target,
            time=start + timedelta(seconds=7 * n),
        )
        for n, (type_, data) in enumerate(script)
    ]
