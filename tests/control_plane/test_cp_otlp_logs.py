"""OTLP logs: records that name a run become ``run.log`` lines; others are counted and ignored (partial success).
Exercised with the OpenTelemetry SDK's own OTLP/HTTP log exporter (protobuf, gzip on), and with JSON bodies."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def record(body: Any, *, severity: int | None = None, text: str | None = None, run: str | None = "otel-log-1",
           nanos: str = "1767225600000000000") -> dict[str, Any]:
    found: dict[str, Any] = {"timeUnixNano": nanos, "body": body, "attributes": []}
    if run:
        found["attributes"].append({"key": "outrider.run_id", "value": {"stringValue": run}})
    if severity is not None:
        found["severityNumber"] = severity
    if text is not None:
        found["severityText"] = text
    return found


def request(*records: dict[str, Any], target: str = "acme/web") -> dict[str, Any]:
    return {"resourceLogs": [{"resource": {"attributes": [{"key": "outrider.target", "value": {"stringValue": target}}]},
                              "scopeLogs": [{"logRecords": list(records)}]}]}


def test_records_naming_a_run_become_its_log_lines(api: RunningServer) -> None:
    body = request(
        record({"stringValue": "planning"}, severity=9),
        record({"stringValue": "careful"}, severity=13, nanos="1767225601000000000"),
        record({"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "3"}}]}}, text="ERROR", nanos="1767225602000000000"),
        record({"stringValue": "nobody's"}, run=None),
    )
    answer = api.client.post("/v1/otlp/v1/logs", json=body)
    assert answer.status_code == 200
    assert answer.json()["partialSuccess"]["rejectedLogRecords"] == 0
    assert "1 log records naming no run" in answer.json()["partialSuccess"]["errorMessage"]
    lines = api.client.get("/v1/runs/otel-log-1/logs").json()["items"]
    assert [(line["level"], line["message"]) for line in lines] == [("info", "planning"), ("warning", "careful"), ("error", '{"k": 3}')]
    assert api.client.get("/v1/runs/otel-log-1").json()["target"] == "acme/web"
    again = api.client.post("/v1/otlp/v1/logs", json=body)  # a resend stores nothing twice
    assert again.status_code == 200 and len(api.client.get("/v1/runs/otel-log-1/logs").json()["items"]) == 3


def test_bad_log_requests(api: RunningServer) -> None:
    assert api.client.post("/v1/otlp/v1/logs", json={"resourceLogs": "x"}).status_code == 400
    assert api.client.post("/v1/otlp/v1/logs", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    metrics = api.client.post("/v1/otlp/v1/metrics", json={})
    assert metrics.status_code == 404 and "not ingested" in metrics.json()["message"]


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_the_opentelemetry_log_exporter_with_compression(api: RunningServer, compression: str) -> None:
    """The SDK's OTLP/HTTP log exporter (protobuf), behind Python's logging, as agents wire it."""
    exporter_module = pytest.importorskip("opentelemetry.exporter.otlp.proto.http._log_exporter")
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.sdk import resources
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    run = f"otel-sdk-log-{compression}"
    exporter = exporter_module.OTLPLogExporter(endpoint=f"{api.url}/v1/otlp/v1/logs", compression=Compression(compression),
                                               headers={"Authorization": f"Bearer {support.TOKEN}"})
    provider = LoggerProvider(resource=resources.Resource.create({"service.name": "agent", "outrider.run_id": run,
                                                                  "outrider.target": "acme/web"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"agent-{compression}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    logger.info("step one done")
    logger.warning("retrying the tests")
    provider.shutdown()
    api.caught_up()  # the SDK's exporter wrote, not api.client: wait for the projection
    lines = api.client.get(f"/v1/runs/{run}/logs").json()["items"]
    assert [(line["level"], line["message"]) for line in lines] == [("info", "step one done"), ("warning", "retrying the tests")]
