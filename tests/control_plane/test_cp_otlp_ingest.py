"""POST /v1/otlp/v1/traces on a real server: GenAI spans become run.llm_usage events in the run record,
a re-sent span is stored once, bad spans are rejected per the OTLP partial-success answer, protobuf gets 415."""

from __future__ import annotations

from typing import Any

import pytest

from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

START = 1_767_268_800_000_000_000  # 2026-01-01T12:00:00Z in ns


def value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": v}


def span(span_id: str, *, trace: str = "5b8efff798038103d269b633813fc60c", seconds: float = 2.0, status: int = 1,
         **attributes: Any) -> dict[str, Any]:
    return {
        "traceId": trace, "spanId": span_id, "name": "chat", "kind": 3,
        "startTimeUnixNano": str(START), "endTimeUnixNano": str(START + int(seconds * 1e9)),
        "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
        "status": {"code": status, **({"message": "rate limited"} if status == 2 else {})},
    }


def request(spans: list[dict[str, Any]], **resource: Any) -> dict[str, Any]:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": k, "value": value(v)} for k, v in resource.items()]},
        "scopeSpans": [{"scope": {"name": "agent"}, "spans": spans}],
    }]}


GENAI = {"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
         "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}


def test_genai_spans_become_llm_usage_in_the_run_record(api: RunningServer) -> None:
    body = request([
        span("aaaaaaaaaaaaaaa1", **GENAI, **{"outrider.cost_usd": 0.0081, "outrider.phase": "plan"}),
        span("aaaaaaaaaaaaaaa2", seconds=0.5, **{"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4.1",
                                                 "gen_ai.response.model": "gpt-4.1-2025-04-14",
                                                 "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5,
                                                 "outrider.run_id": "run-otel-2"}),
        span("aaaaaaaaaaaaaaa3", status=2, **GENAI),
    ], **{"service.name": "agent", "outrider.run_id": "run-otel-1", "outrider.target": "acme/web"})
    answer = api.client.post("/v1/otlp/v1/traces", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}

    record = api.client.get("/v1/runs/run-otel-1").json()
    assert record["target"] == "acme/web"
    total = record["llm_usage"]["total"]
    assert (total["input_tokens"], total["output_tokens"]) == (2400, 600)
    assert total["cost_usd"] == pytest.approx(0.0081)  # the unpriced span adds no cost
    assert record["llm_usage"]["by_phase"]["plan"]["input_tokens"] == 1200
    stored = api.client.get("/v1/events", params={"run_id": "run-otel-1"}).json()["items"]
    first = next(item["event"] for item in stored if item["event"]["id"].endswith("aaaaaaaaaaaaaaa1"))
    assert first["source"] == "/otlp" and first["data"]["latency_s"] == pytest.approx(2.0)
    assert first["time"].startswith("2026-01-01T12:00:02")
    failed = next(item["event"] for item in stored if item["event"]["id"].endswith("aaaaaaaaaaaaaaa3"))
    assert failed["data"]["error"] == "rate limited"

    other = api.client.get("/v1/runs/run-otel-2").json()  # the span's own run id wins over the resource's
    assert other["llm_usage"]["by_model"]["openai/gpt-4.1-2025-04-14"]["input_tokens"] == 50

    again = api.client.post("/v1/otlp/v1/traces", json=body)  # an exporter's retry: stored once
    assert again.status_code == 200
    assert api.client.get("/v1/runs/run-otel-1").json()["llm_usage"]["total"]["input_tokens"] == 2400


def test_bad_spans_are_rejected_and_the_rest_stored(api: RunningServer) -> None:
    body = request([
        span("bbbbbbbbbbbbbbb1", **GENAI),
        span("bbbbbbbbbbbbbbb2", **{**GENAI, "gen_ai.usage.input_tokens": -5}),
        span("bbbbbbbbbbbbbbb3", **{k: v for k, v in GENAI.items() if k != "gen_ai.request.model"}),
        span("bbbbbbbbbbbbbbb4", **{"http.method": "GET"}),  # not an LLM call: ignored
    ], **{"outrider.run_id": "run-otel-3"})
    answer = api.client.post("/v1/otlp/v1/traces", json=body)
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == 2
    assert "data.input_tokens" in partial["errorMessage"] and "gen_ai.request.model" in partial["errorMessage"]
    assert "1 spans without gen_ai.usage attributes ignored" in partial["errorMessage"]
    record = api.client.get("/v1/runs/run-otel-3").json()
    assert record["llm_usage"]["total"]["input_tokens"] == 1200

    no_run = api.client.post("/v1/otlp/v1/traces", json=request([span("ccccccccccccccc1", **GENAI)]))
    assert no_run.json()["partialSuccess"]["rejectedSpans"] == 1
    assert "outrider.run_id" in no_run.json()["partialSuccess"]["errorMessage"]


def test_refusals(api: RunningServer) -> None:
    assert api.anonymous.post("/v1/otlp/v1/traces", json=request([])).status_code == 401
    protobuf = api.client.post("/v1/otlp/v1/traces", content=b"\xff\xff", headers={"Content-Type": "application/x-protobuf"})
    assert protobuf.status_code == 400 and protobuf.json()["error"] == "malformed_otlp"
    text = api.client.post("/v1/otlp/v1/traces", content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    malformed = api.client.post("/v1/otlp/v1/traces", content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_otlp"
    for wrong in ({"resourceSpans": "x"}, {"resourceSpans": [{"resource": "x"}]}, [1]):
        assert api.client.post("/v1/otlp/v1/traces", json=wrong).status_code == 400
    odd = request([span("not-hex", **GENAI), {**span("ddddddddddddddd1", **GENAI), "endTimeUnixNano": "9" * 30}],
                  **{"outrider.run_id": "run-otel-4"})
    answer = api.client.post("/v1/otlp/v1/traces", json=odd).json()["partialSuccess"]
    assert answer["rejectedSpans"] == 2 and "hex" in answer["errorMessage"] and "out of range" in answer["errorMessage"]
    assert api.client.post("/v1/otlp/v1/traces", json={}).json() == {}


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_the_opentelemetry_sdk_exports_to_it_over_protobuf(api: RunningServer, compression: str) -> None:
    """Interoperability: the real OTLP/HTTP exporter of the OpenTelemetry SDK (protobuf) as the client, with each
    compression it offers (OTEL_EXPORTER_OTLP_COMPRESSION; collectors compress by default)."""
    trace_exporter = pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.sdk import resources
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import export

    exporter = trace_exporter.OTLPSpanExporter(endpoint=f"{api.url}/v1/otlp/v1/traces",
                                               headers={"Authorization": f"Bearer {support.TOKEN}"},
                                               compression=Compression(compression))
    provider = sdk_trace.TracerProvider(resource=resources.Resource.create(
        {"service.name": "agent", "outrider.run_id": "run-otel-sdk", "outrider.target": "acme/web"}))
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agent")
    with tracer.start_as_current_span("chat claude-sonnet-4") as call:
        call.set_attributes({"gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4",
                             "gen_ai.usage.input_tokens": 700, "gen_ai.usage.output_tokens": 70,
                             "outrider.cost_usd": 0.0032, "outrider.phase": "plan"})
    with tracer.start_as_current_span("http GET"):
        pass  # not an LLM call: ignored
    provider.shutdown()
    api.caught_up()  # the SDK's exporter wrote, not api.client: wait for the projection
    record = api.client.get("/v1/runs/run-otel-sdk").json()
    assert record["target"] == "acme/web"
    assert record["llm_usage"]["by_phase"]["plan"]["input_tokens"] == 700
    assert record["llm_usage"]["total"]["cost_usd"] == pytest.approx(0.0032)
    stored = api.client.get("/v1/events", params={"run_id": "run-otel-sdk"}).json()["items"]
    assert len(stored) == 1
    event = stored[0]["event"]
    assert event["id"] == f"otlp-{event['data']['trace_id']}-{event['data']['span_id']}"
    assert len(event["data"]["trace_id"]) == 32 and event["data"]["latency_s"] >= 0
