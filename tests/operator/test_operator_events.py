"""Lifecycle events to the control plane: batching, deterministic ids, bounded buffer, outage then delivery.

A tiny real HTTP receiver on 127.0.0.1 stands in for the control plane where the test needs to switch it off
and on; one test runs the operator against the real control plane app (create_app under uvicorn).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from operator_harness import Cluster, Operator, wait_for

from outrider.common import events
from outrider.operator import events_client, kube
from tests.conftest import free_port

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Receiver:
    """POST /v1/events → 202 {"accepted", "duplicates"}, deduplicating on (source, id) like the control plane."""

    def __init__(self, port: int | None = None, status: int = 202) -> None:
        self.port = port or free_port()
        self.status = status
        self.batches: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.seen: set[tuple[str, str]] = set()
        self.server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch]

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.headers.append(dict(self.headers))
                accepted = duplicates = 0
                if receiver.status < 300:
                    receiver.batches.append(body)
                    for event in body:
                        key = (event["source"], event["id"])
                        duplicates += key in receiver.seen
                        accepted += key not in receiver.seen
                        receiver.seen.add(key)
                payload = json.dumps({"accepted": accepted, "duplicates": duplicates}).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def event(n: int, type_: str = "run.created") -> dict[str, Any]:
    return events_client.build(type_, id_parts=(f"uid-{n}", "created"), time=T0, target="repo-a", runid=f"r{n}")


def test_the_same_transition_is_queued_once() -> None:
    sender = events_client.EventSender("http://127.0.0.1:9", None)
    sender.emit(event(1))
    sender.emit(event(1))
    assert sender.buffered == 1


# --- the sender on its own -------------------------------------------------------------------------------
def test_event_ids_are_deterministic_and_events_valid() -> None:
    a, b = event(1), event(1)
    assert a["id"] == b["id"] and a["id"] != event(2)["id"]
    assert a["source"] == "/outrider/operator" and a["specversion"] == "1.0"
    assert events.validate_event(a)[1] == []
    with pytest.raises(ValueError, match="runid"):
        events_client.build("run.failed", id_parts=("x",), time=T0)


async def test_batches_with_the_cloudevents_batch_content_type_and_the_token(receiver: Receiver) -> None:
    receiver.start()
    sender = events_client.EventSender(receiver.url, "s3cret", batch_max=2)
    sender.start()
    for n in range(5):
        sender.emit(event(n))
    await _until(lambda: sender.sent == 5)
    await sender.stop()
    assert [len(b) for b in receiver.batches] == [2, 2, 1]
    assert receiver.headers[0]["Content-Type"] == "application/cloudevents-batch+json"
    assert receiver.headers[0]["Authorization"] == "Bearer s3cret"
    assert [e["runid"] for e in receiver.events] == [f"r{n}" for n in range(5)]


async def test_outage_is_buffered_then_delivered_in_order() -> None:
    receiver = Receiver()  # not listening yet: connection refused
    sender = events_client.EventSender(receiver.url, None, backoff_initial=0.05, backoff_max=0.2)
    sender.start()
    for n in range(3):
        sender.emit(event(n))
    await _until(lambda: sender.consecutive_errors >= 2)
    assert sender.buffered == 3 and sender.dropped == 0
    receiver.start()
    try:
        await _until(lambda: sender.buffered == 0)
        assert [e["runid"] for e in receiver.events] == ["r0", "r1", "r2"]
    finally:
        await sender.stop()
        receiver.stop()


async def test_bounded_buffer_drops_the_oldest_and_counts_them() -> None:
    sender = events_client.EventSender("http://127.0.0.1:9", None, buffer_max=3)  # never started: nothing drains
    for n in range(5):
        sender.emit(event(n))
    assert sender.buffered == 3 and sender.dropped == 2
    assert [item.event["runid"] for item in sender._buffer] == ["r2", "r3", "r4"]


async def test_no_url_means_nothing_is_sent() -> None:
    sender = events_client.EventSender(None, None)
    sender.start()
    sender.emit(event(1))
    assert sender.buffered == 0 and sender.dropped == 0
    await sender.stop()


async def test_a_refused_batch_is_not_retried_forever() -> None:
    receiver = Receiver(status=422).start()
    sender = events_client.EventSender(receiver.url, None)
    sender.start()
    try:
        sender.emit(event(1))
        await _until(lambda: sender.rejected == 1)
        assert sender.buffered == 0
    finally:
        await sender.stop()
        receiver.stop()


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# --- the operator --------------------------------------------------------------------------------------
def test_operator_buffers_through_an_outage_and_delivers_after(cluster: Cluster, operator_env: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    operator_env["OUTRIDER_URL"] = receiver.url
    operator_env["OUTRIDER_TOKEN"] = "tok"
    operator = Operator(operator_env)
    cluster.autonomy(enabled="true", reason="go")
    cluster.target("repo-a")
    operator.start()
    try:
        cluster.run("r1", "repo-a")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted")
        cluster.start_job("r1")
        cluster.finish_job("r1", ok=False, reason="BackoffLimitExceeded")
        wait_for(lambda: cluster.run_status("r1").get("phase") == "Failed", what="reconciliation went on during the outage")
        receiver.start()
        wanted = {"autonomy.changed", "operator.heartbeat", "target.status", "run.created", "run.admitted",
                  "run.started", "run.failed"}
        wait_for(lambda: wanted <= {e["type"] for e in receiver.events}, what="every event delivered")
    finally:
        operator.stop()
        receiver.stop()
    by_type = {e["type"]: e for e in receiver.events}
    assert by_type["run.failed"]["data"]["error_type"] == "BackoffLimitExceeded"
    assert by_type["run.failed"]["runid"] == "r1" and by_type["run.failed"]["target"] == "repo-a"
    assert by_type["autonomy.changed"]["data"]["enabled"] is True
    assert by_type["operator.heartbeat"]["data"]["autonomy_enabled"] is True
    for e in receiver.events:
        assert events.validate_event(e)[1] == [], e
    ids = [e["id"] for e in receiver.events if e["type"].startswith("run.")]
    assert len(ids) == len(set(ids)), "each run transition is posted once"


def test_operator_against_the_real_control_plane(cluster: Cluster, operator_env: dict[str, str], tmp_path: Path) -> None:
    from outrider.control_plane import app as app_module
    from outrider.control_plane import settings as cp_settings

    config = cp_settings.Settings(database_url=f"sqlite:///{tmp_path / 'cp.db'}", api_tokens="op-token")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_module.create_app(config), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="control plane started")
    operator_env["OUTRIDER_URL"] = f"http://127.0.0.1:{port}"
    operator_env["OUTRIDER_TOKEN"] = "op-token"
    operator = Operator(operator_env)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer op-token"})
    try:
        cluster.autonomy(enabled="true")
        cluster.target("repo-a", circuitBreaker={"failureThreshold": 1, "cooldownSeconds": 3600})
        operator.start()
        cluster.run("r1", "repo-a")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False)
        cluster.start_job("r1")
        cluster.finish_job("r1", ok=False)

        def stored(type_: str) -> list[dict[str, Any]]:
            return client.get("/v1/events", params={"type": type_}).json()["items"]

        wait_for(lambda: stored("target.breaker.tripped"), what="breaker trip stored")
        wait_for(lambda: stored("run.failed") and stored("operator.heartbeat"), what="run.failed stored")
        targets = wait_for(lambda: (t := client.get("/v1/targets").json()) and t[0].get("breaker_state") == "Open" and t,
                           what="the control plane's target view")
        assert targets[0]["target"] == "repo-a"
        autonomy = client.get("/v1/autonomy/status").json()
        assert autonomy["enabled"] is True
        assert 'scope="repo-a"' in client.get("/metrics").text

        cluster.delete(kube.targets("default", "repo-a"))  # the Target's series and status leave with it
        wait_for(lambda: client.get("/v1/targets").json() == [], what="the deleted Target left the control plane's view")
        assert stored("target.deleted")[0]["event"]["target"] == "repo-a"
        metrics = client.get("/metrics").text
        assert 'target="repo-a"' not in metrics and 'scope="repo-a"' not in metrics
        assert 'outrider_runs_total{namespace="other",status="failed",target="other"} 1.0' in metrics  # counted, folded
    finally:
        operator.stop()
        client.close()
        server.should_exit = True
        thread.join(10)


def test_a_drained_run_is_queued_again_in_the_control_plane(cluster: Cluster, operator_env: dict[str, str],
                                                            control_plane: str) -> None:
    """Emergency stop, then resume: the control plane follows the Run from running back to queued (run.requeued),
    then to running again (a new admission and a new start)."""
    from tests.operator.conftest import CONTROL_PLANE_TOKEN

    operator_env.update(OUTRIDER_URL=control_plane, OUTRIDER_TOKEN=CONTROL_PLANE_TOKEN)
    client = httpx.Client(base_url=control_plane, headers={"Authorization": f"Bearer {CONTROL_PLANE_TOKEN}"}, timeout=30)

    def status() -> str | None:
        return client.get("/v1/runs/r1").json().get("status")

    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator = Operator(operator_env).start()
    try:
        cluster.run("r1", "repo-a")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted")
        cluster.start_job("r1")
        wait_for(lambda: status() == "running", what="running in the control plane")
        cluster.autonomy(enabled="false", mode="drain", reason="runaway")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is True, what="drained")
        wait_for(lambda: status() == "queued", what="queued again in the control plane")
        cluster.job_status("r1", {"active": 0, "startTime": None})  # what the Job controller does when suspended
        cluster.autonomy(enabled="true")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted again")
        time.sleep(1.1)  # a new start time, to the second
        cluster.start_job("r1")
        wait_for(lambda: status() == "running", what="running again in the control plane")
    finally:
        operator.stop()
        client.close()
