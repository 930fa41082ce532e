"""The operator's words about a running run (docs/events.md): ``run.stalled`` (the watchdog) makes the record say
``stalled_since`` while the run stays silent, without counting as activity; ``run.requeued`` (the emergency stop)
puts it back to queued until it is admitted and started again. Only the operator may send either."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

OPERATOR = "operator-token-for-stall-tests-0123456"


def _at(event: dict[str, Any], moment: datetime) -> dict[str, Any]:
    return {**event, "time": moment.isoformat()}


def test_a_stalled_run_says_so_until_it_speaks_again(make_settings: Callable[..., settings.Settings],
                                                        start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_settings(operator_tokens=OPERATOR))
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    assert server.client.post("/v1/events", json=[
        _at(support.event("run.started", "quiet"), t0),
        _at(support.event("run.log", "quiet", data={"level": "info", "message": "thinking"}), t0 + timedelta(minutes=1)),
    ]).status_code == 202
    stall = _at(support.event("run.stalled", "quiet", source="/outrider/operator",
                              data={"idle_seconds": 600.0, "timeout_seconds": 600}), t0 + timedelta(minutes=11))
    worker = server.client.post("/v1/keys", json={"role": "ingest"}).json()["secret"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {worker}"}, timeout=30) as as_worker:
        assert as_worker.post("/v1/events", json=stall).status_code == 403  # a worker cannot call itself (or others) stalled
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=30) as operator:
        assert operator.post("/v1/events", json=stall).status_code == 202
    server.caught_up()
    record = server.client.get("/v1/runs/quiet").json()
    assert record["stalled_since"] is not None and record["status"] == "running"
    assert datetime.fromisoformat(record["last_event_at"].replace("Z", "+00:00")) == t0 + timedelta(minutes=1)  # not activity
    summaries = [item["summary"] for item in server.client.get("/v1/status").json()["recent_activity"]]
    assert "Run quiet stalled: no event for 600 s" in summaries
    assert server.client.post("/v1/events", json=_at(support.event("run.progress", "quiet", data={"stage": "code", "iteration": 2}),
                                                     t0 + timedelta(minutes=12))).status_code == 202
    server.caught_up()
    assert server.client.get("/v1/runs/quiet").json()["stalled_since"] is None  # it spoke again


def test_a_drained_run_is_queued_again_until_it_is_admitted_and_started_again(
        make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    """The emergency stop suspends a running Job: the operator's run.requeued puts the record back to queued; a new
    admission and start (new event ids: admittedAt and the Job's startTime) make it running again."""
    server = start_server(make_settings(operator_tokens=OPERATOR))
    t0 = datetime.now(UTC) - timedelta(minutes=30)

    def operator_event(kind: str, minutes: int, suffix: str = "") -> dict[str, Any]:
        return _at(support.event(kind, "drained", source="/outrider/operator", id=f"{kind}-{suffix or minutes}"),
                   t0 + timedelta(minutes=minutes))

    def status() -> str:
        server.caught_up()
        return str(server.client.get("/v1/runs/drained").json()["status"])

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OPERATOR}"}, timeout=30) as operator:
        assert operator.post("/v1/events", json=[operator_event("run.created", 0), operator_event("run.admitted", 1),
                                                 operator_event("run.started", 2)]).status_code == 202
        assert status() == "running"
        assert operator.post("/v1/events", json=operator_event("run.requeued", 5)).status_code == 202
        assert status() == "queued"
        summaries = [item["summary"] for item in server.client.get("/v1/status").json()["recent_activity"]]
        assert "Run drained back in the queue (emergency stop suspended its Job)" in summaries
        assert operator.post("/v1/events", json=operator_event("run.admitted", 9)).status_code == 202
        assert status() == "admitted"
        assert operator.post("/v1/events", json=[operator_event("run.started", 10),
                                                 operator_event("run.succeeded", 20)]).status_code == 202
        assert status() == "succeeded"
    worker = server.client.post("/v1/keys", json={"role": "ingest"}).json()["secret"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {worker}"}, timeout=30) as as_worker:
        assert as_worker.post("/v1/events", json=operator_event("run.requeued", 25, "w")).status_code == 403
