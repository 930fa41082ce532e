"""OTLP export of finished runs: the trace built from a run's events (SDK in-memory exporter, fed by the
store's subscribe API), and end to end from a real control plane to an OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outrider.common import events
from outrider.control_plane import settings, store
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

otel_export = pytest.importorskip("outrider.control_plane.otel_export", reason="the otel extra is not installed")
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


def lifecycle(run: str) -> list[dict[str, Any]]:
    usage = {"provider": "anthropic", "model": "claude-sonnet-4", "phase": "plan", "input_tokens": 1200,
             "output_tokens": 300, "cost_usd": 0.0081, "latency_s": 1.5}
    return [
        support.event("run.created", run, at=0),
        support.event("run.started", run, at=1),
        support.event("run.stage.started", run, at=2, data={"stage": "plan"}),
        support.event("run.llm_usage", run, at=4, data=usage),
        support.event("run.stage.completed", run, at=5, data={"stage": "plan"}),
        support.event("run.stage.started", run, at=5, data={"stage": "code"}),
        support.event("run.llm_usage", run, at=7, data={**usage, "phase": "code", "model": "gpt-4.1", "provider": "openai",
                                                         "cost_usd": None, "error": "rate limited"}),
        support.event("run.failed", run, at=9, data={"error_type": "PathViolation", "stage": "code", "message": "wrote /etc"}),
    ]


def check_trace(spans: dict[str, Any], attrs: Callable[[Any], dict[str, Any]], run: str) -> None:
    """Assertions shared by both tests; ``spans`` by name, ``attrs`` reads a span's attributes."""
    assert set(spans) == {f"run {run}", "stage plan", "stage code", "chat claude-sonnet-4", "chat gpt-4.1"}
    root = attrs(spans[f"run {run}"])
    assert root["outrider.run_id"] == run and root["outrider.target"] == "acme/web" and root["outrider.status"] == "failed"
    assert (root["gen_ai.usage.input_tokens"], root["gen_ai.usage.output_tokens"]) == (2400, 600)
    assert root["outrider.cost_usd"] == pytest.approx(0.0081)
    call = attrs(spans["chat claude-sonnet-4"])
    assert call["gen_ai.provider.name"] == "anthropic" and call["gen_ai.request.model"] == "claude-sonnet-4"
    assert (call["gen_ai.usage.input_tokens"], call["gen_ai.usage.output_tokens"]) == (1200, 300)
    assert "outrider.cost_usd" not in attrs(spans["chat gpt-4.1"])  # unpriced stays absent, not 0
    assert attrs(spans["stage code"])["outrider.stage.completed"] is False


async def test_a_finished_run_becomes_one_trace(tmp_path: Path) -> None:
    config = settings.Settings(database_url=f"sqlite:///{tmp_path / 'outrider.db'}", api_tokens=support.TOKEN)
    the_store = store.Store(config)
    the_store.open()
    memory = InMemorySpanExporter()
    watcher = asyncio.create_task(otel_export.watch(the_store, otel_export.RunExporter(memory), poll_seconds=0.05))
    try:
        await asyncio.sleep(0)  # let the watcher subscribe before the events are committed
        batch = [events.CloudEvent.model_validate(raw) for raw in lifecycle("run-otel-x")]
        await asyncio.wrap_future(the_store.submit(batch))
        deadline = time.monotonic() + 30
        while len(memory.get_finished_spans()) < 5:
            assert time.monotonic() < deadline, "no trace exported"
            await asyncio.sleep(0.02)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
        the_store.close()
    spans = {span.name: span for span in memory.get_finished_spans()}
    check_trace(spans, lambda span: dict(span.attributes), "run-otel-x")
    root = spans["run run-otel-x"]
    assert {span.context.trace_id for span in spans.values()} == {otel_export.trace_id("run-otel-x")}
    assert root.parent is None and root.status.status_code.name == "ERROR"
    assert spans["chat claude-sonnet-4"].parent.span_id == spans["stage plan"].context.span_id
    assert spans["stage plan"].parent.span_id == root.context.span_id
    assert (spans["chat claude-sonnet-4"].end_time - spans["chat claude-sonnet-4"].start_time) == 1_500_000_000
    assert (root.end_time - root.start_time) == 8_000_000_000  # started (1 s) to failed (9 s)
    assert spans["chat gpt-4.1"].status.status_code.name == "ERROR"

    again = InMemorySpanExporter()  # exporting the same run again gives the same ids
    reader = store.Store(config)
    reader.open()
    try:
        otel_export.RunExporter(again).export_run(reader, "run-otel-x")
    finally:
        reader.close()
    assert sorted(s.context.span_id for s in again.get_finished_spans()) == sorted(s.context.span_id for s in spans.values())


class _Receiver(http.server.BaseHTTPRequestHandler):
    requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        type(self).requests.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Any]]]:
    """An OTLP/HTTP (protobuf) traces receiver on 127.0.0.1 (the Collector binary is not available here)."""
    handler = type("Receiver", (_Receiver,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", handler.requests
    server.shutdown()
    server.server_close()


def test_the_control_plane_exports_finished_runs_over_otlp_http(
    make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer],
    receiver: tuple[str, list[Any]],
) -> None:
    endpoint, received = receiver
    api = start_server(make_sqlite_settings(otlp_endpoint=endpoint))
    answer = api.client.post("/v1/events", json=lifecycle("run-otel-e2e"), headers={"Content-Type": "application/cloudevents-batch+json"})
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 30
    while not received:
        assert time.monotonic() < deadline, "nothing reached the OTLP receiver"
        time.sleep(0.02)
    assert len(received) == 1  # one request per run
    resource_spans = received[0].resource_spans[0]
    assert {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"] == "outrider-control-plane"
    spans = {span.name: span for scope in resource_spans.scope_spans for span in scope.spans}

    def attrs(span: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for item in span.attributes:
            kind = item.value.WhichOneof("value")
            found[item.key] = getattr(item.value, kind)
        return found

    check_trace(spans, attrs, "run-otel-e2e")
    assert {span.trace_id for span in spans.values()} == {otel_export.trace_id("run-otel-e2e").to_bytes(16, "big")}
