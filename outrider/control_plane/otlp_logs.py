"""OTLP logs → ``run.log`` events: many agents already report through an OpenTelemetry logging handler.

``POST /v1/otlp/v1/logs`` (``routes/otlp.py``) takes an ExportLogsServiceRequest (JSON, or protobuf with the
``otel`` extra) and :func:`map_request` makes each log record that names a run into one ``run.log`` event:

- the run and target ← ``outrider.run_id`` / ``outrider.target``, from the record's attributes, else the
  resource's; a record naming no run is ignored (counted in the partial-success message, not rejected);
- ``level`` ← ``severityNumber`` (1–8 debug, 9–12 info, 13–16 warning, 17–20 error, 21–24 critical), else
  ``severityText``, else info; ``message`` ← the body (a string as is, anything else as JSON), cut at 64 KiB;
- ``time`` ← ``timeUnixNano``, else ``observedTimeUnixNano``, else the time it was received (then marked
  ``timesource: received``); ``trace_id``/``span_id`` are kept in ``data`` when present;
- ``source`` ``/otlp/logs``; ``id`` a hash of the resource and the record, so a record sent twice is stored once
  (two identical records at the same nanosecond count once too).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from outrider.common import events
from outrider.control_plane import otlp

SOURCE = "/otlp/logs"
MESSAGE_MAX = 65536
_LEVELS = ((4, "debug"), (8, "debug"), (12, "info"), (16, "warning"), (20, "error"), (24, "critical"))
_TEXT_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warning", "warning": "warning",
                "error": "error", "fatal": "critical", "critical": "critical"}


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """An OTLP/HTTP protobuf ExportLogsServiceRequest as its JSON mapping (ids in hex, as OTLP/JSON writes them)."""
    try:
        from google.protobuf import json_format, message
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    except ImportError as exc:
        raise otlp.ProtobufUnavailable(str(exc)) from exc
    try:
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
    except message.DecodeError as exc:
        raise otlp.OtlpError(f"not a protobuf ExportLogsServiceRequest: {exc}") from exc
    document: dict[str, Any] = json_format.MessageToDict(request)
    for resource_logs in document.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return document


def encode_protobuf_response(rejected: int, message: str | None) -> bytes:
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    response = logs_service_pb2.ExportLogsServiceResponse()
    if message is not None:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _level(record: dict[str, Any]) -> str:
    number = record.get("severityNumber")
    if isinstance(number, str) and number.startswith("SEVERITY_NUMBER_"):  # protobuf's enum name in JSON
        text = number.removeprefix("SEVERITY_NUMBER_").rstrip("0123456789").lower()
        return _TEXT_LEVELS.get(text, "info")
    if isinstance(number, int) and 1 <= number <= 24:
        return next(level for bound, level in _LEVELS if number <= bound)
    text = str(record.get("severityText") or "").strip().lower()
    return _TEXT_LEVELS.get(text, "info")


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("kvlistValue"), dict):
        value: Any = otlp.attributes(body["kvlistValue"].get("values"))
    elif isinstance(body, dict):
        value = otlp.attribute_value(body)
    else:
        value = body
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MESSAGE_MAX]


def record_event(record: dict[str, Any], resource: dict[str, Any], resource_key: str) -> tuple[events.CloudEvent | None, str | None]:
    """The ``run.log`` event of one record; (None, None) when it names no run (ignored), (None, why) when rejected."""
    attrs = otlp.attributes(record.get("attributes"))
    run_id = attrs.get("outrider.run_id") or resource.get("outrider.run_id")
    if not run_id:
        return None, None
    target = attrs.get("outrider.target") or resource.get("outrider.target")
    data: dict[str, Any] = {"level": _level(record), "message": _message(record.get("body"))}
    for key, name in (("traceId", "trace_id"), ("spanId", "span_id")):
        if record.get(key):
            data[name] = str(record[key])
    digest = hashlib.sha256((resource_key + json.dumps(record, sort_keys=True, default=str)).encode()).hexdigest()[:40]
    raw: dict[str, Any] = {"specversion": "1.0", "id": f"otlp-log-{digest}", "source": SOURCE,
                           "type": events.EventType.RUN_LOG.value, "runid": str(run_id), "data": data}
    moment = otlp._nanos(record.get("timeUnixNano")) or otlp._nanos(record.get("observedTimeUnixNano"))
    if moment is not None:
        try:
            raw["time"] = datetime.fromtimestamp(moment / 1e9, UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            return None, "a log record's time is out of range"
    if target:
        raw["target"] = str(target)
    event, problems = events.validate_event(raw)
    if event is None:
        return None, "; ".join(f"{p.field}: {p.message}" for p in problems)
    return event, None


def map_request(document: Any) -> otlp.Mapped:
    """Map a decoded ExportLogsServiceRequest; raises :class:`otlp.OtlpError` when its shape is wrong."""
    if not isinstance(document, dict):
        raise otlp.OtlpError("the body must be a JSON object (ExportLogsServiceRequest)")
    mapped = otlp.Mapped()
    for resource_logs in otlp._list(document, "resourceLogs"):
        if not isinstance(resource_logs, dict) or not isinstance(resource_logs.get("resource") or {}, dict):
            raise otlp.OtlpError("resourceLogs items and their resource must be objects")
        resource_part = resource_logs.get("resource") or {}
        resource = otlp.attributes(resource_part.get("attributes"))
        resource_key = json.dumps(resource, sort_keys=True, default=str)
        for scope_logs in otlp._list(resource_logs, "scopeLogs"):
            if not isinstance(scope_logs, dict):
                raise otlp.OtlpError("scopeLogs items must be objects")
            for record in otlp._list(scope_logs, "logRecords"):
                if not isinstance(record, dict):
                    mapped.rejected += 1
                    mapped.reasons.append("a log record is not a JSON object")
                    continue
                event, reason = record_event(record, resource, resource_key)
                if event is not None:
                    mapped.events.append(event)
                elif reason is None:
                    mapped.ignored += 1
                else:
                    mapped.rejected += 1
                    mapped.reasons.append(reason)
    return mapped
