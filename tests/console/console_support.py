"""Helpers for console and CLI tests: a real control plane under uvicorn on 127.0.0.1, and event builders.

The server is ``create_app`` on a temporary SQLite file, served by uvicorn in a thread on a free port;
events are posted through the public ``POST /v1/events`` like workers and the operator do.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from outrider.control_plane import app as app_module
from outrider.control_plane import server as cp_server
from outrider.control_plane import settings
from tests.conftest import free_port

TOKEN = "console-test-token-0123456789"
_ids = itertools.count(1)


class Server:
    """A control plane in a thread; ``client`` carries a valid token; ``stop()`` shuts it down."""

    def __init__(self, db: Path, **overrides: Any) -> None:
        config = settings.Settings(database_url=f"sqlite:///{db}", api_tokens=TOKEN, **overrides)
        self.app = app_module.create_app(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(cp_server.uvicorn_config(self.app, config, "127.0.0.1", self.port, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def post(self, *batch: dict[str, Any]) -> None:
        response = self.client.post(
            "/v1/events", json=list(batch), headers={"Content-Type": "application/cloudevents-batch+json"}
        )
        assert response.status_code == 202, response.text
        # The console reads projections: wait until they cover what was posted, as a user who opens the page a
        # moment later would find (the projector's lag here is milliseconds).
        self.wait_projected(int(response.json()["position"]))

    def wait_projected(self, position: int) -> None:
        deadline = time.monotonic() + 30
        while self.client.get("/v1/projection").json()["position"] < position:
            assert time.monotonic() < deadline, "the projection did not catch up"
            time.sleep(0.01)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


def event(kind: str, *, runid: str | None = None, target: str | None = None, at: datetime | None = None,
          data: dict[str, Any] | None = None, source: str = "/tests/worker") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{uuid.uuid4().hex[:8]}-{next(_ids)}",
        "source": source,
        "type": kind,
        "time": (at or datetime.now(UTC)).isoformat(),
        "target": target,
        "runid": runid,
        "data": data or {},
    }


def run_events(run_id: str, target: str, *, outcome: str = "succeeded", start: datetime | None = None,
               prs: int = 0, cost: float | None = 0.0123) -> list[dict[str, Any]]:
    """A whole run's story: created, started, two stages, LLM usage, optional PRs, and its outcome."""
    t0 = start or datetime.now(UTC) - timedelta(minutes=5)
    step = timedelta(seconds=10)
    out = [
        event("run.created", runid=run_id, target=target, at=t0),
        event("run.started", runid=run_id, target=target, at=t0 + step),
        event("run.stage.started", runid=run_id, target=target, at=t0 + step, data={"stage": "plan"}),
        event("run.llm_usage", runid=run_id, target=target, at=t0 + 2 * step, data={
            "provider": "anthropic", "model": "claude-sonnet", "phase": "plan", "input_tokens": 1200,
            "output_tokens": 300, "cost_usd": cost}),
        event("run.stage.completed", runid=run_id, target=target, at=t0 + 3 * step, data={"stage": "plan"}),
        event("run.stage.started", runid=run_id, target=target, at=t0 + 3 * step, data={"stage": "code"}),
        event("run.log", runid=run_id, target=target, at=t0 + 4 * step, data={"level": "info", "message": "editing files"}),
    ]
    if outcome != "running":
        out.append(event("run.stage.completed", runid=run_id, target=target, at=t0 + 6 * step, data={"stage": "code"}))
    for number in range(prs):
        out.append(event("pr.created", runid=run_id, target=target, at=t0 + 6 * step,
                         data={"number": 700 + number, "url": f"https://example.test/{target}/pull/{700 + number}"}))
    if outcome == "succeeded":
        out.append(event("run.succeeded", runid=run_id, target=target, at=t0 + 7 * step))
    elif outcome == "failed":
        out.append(event("run.failed", runid=run_id, target=target, at=t0 + 7 * step, data={
            "error_type": "TimeoutError", "stage": "code", "message": "tests did not finish in 600s",
            "traceback": "Traceback (most recent call last):\n  File \"agent.py\", line 12, in run\n    wait()\nTimeoutError: tests did not finish in 600s"}))
    return out


def heartbeat(enabled: bool = True, period: float = 30, **extra: Any) -> dict[str, Any]:
    return event("operator.heartbeat", source="/operator", data={
        "autonomy_enabled": enabled, "heartbeat_seconds": period, **extra})


def target_status(target: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "health": "Healthy", "breaker_state": "Closed", "consecutive_failures": 0, "trips": 0,
        "active_runs": 0, "pending_runs": 0, "open_prs": 0, "max_open_prs": 2, "max_concurrent_runs": 1,
    }
    data.update(overrides)
    return event("target.status", target=target, source="/operator", data=data)
