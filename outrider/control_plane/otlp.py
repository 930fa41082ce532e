"""OTLP traces → Outrider events: which spans are LLM calls, and how one becomes a ``run.llm_usage`` event.

Agents instrumented with OpenTelemetry's GenAI semantic conventions already describe every LLM call as a
span. ``POST /v1/otlp/v1/traces`` (see ``routes/otlp.py``) accepts such traces in OTLP/HTTP JSON and
:func:`map_request` turns each GenAI span into one event, so no second instrumentation is needed:

- a span is a GenAI call when it has ``gen_ai.usage.input_tokens`` or ``gen_ai.usage.output_tokens``;
  other spans are ignored (counted, not rejected);
- ``provider`` ← ``gen_ai.provider.name``, else the older ``gen_ai.system``; ``model`` ←
  ``gen_ai.response.model``, else ``gen_ai.request.model``; ``cost_usd`` ← ``outrider.cost_usd``;
  ``phase`` ← ``outrider.phase``; ``latency_s`` ← end − start of the span; ``error`` ← the span's error
  status (its message, else ``error.type``);
- the run and target ← ``outrider.run_id`` / ``outrider.target``, from the span's attributes, else from the
  resource's;
- ``time`` is the span's end (else its start); ``source`` is ``/otlp``; ``id`` is
  ``otlp-<traceId>-<spanId>``, so a span sent twice is stored once.

OTLP/HTTP protobuf bodies are read too when ``opentelemetry-proto`` (the ``otel`` extra) is installed:
:func:`decode_protobuf` turns them into the same JSON mapping.

A GenAI span that lacks a run id, a provider, a model or a time, or whose values do not validate, is
rejected with a reason; the rest of the request is still stored (OTLP partial success).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from outrider.common import events

SOURCE = "/otlp"
USAGE_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
STATUS_ERROR = 2


class OtlpError(ValueError):
    """The request is not an OTLP ExportTraceServiceRequest at all (answered with 400)."""


class ProtobufUnavailable(RuntimeError):
    """opentelemetry-proto (the ``otel`` extra) is not installed: protobuf bodies cannot be read."""


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """An OTLP/HTTP protobuf ExportTraceServiceRequest as the JSON mapping :func:`map_request` reads."""
    try:
        from google.protobuf import json_format, message
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError as exc:
        raise ProtobufUnavailable(str(exc)) from exc
    try:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
    except message.DecodeError as exc:
        raise OtlpError(f"not a protobuf ExportTraceServiceRequest: {exc}") from exc
    document: dict[str, Any] = json_format.MessageToDict(request)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId"):  # bytes come out as base64; OTLP/JSON writes them in hex
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def encode_protobuf_response(rejected: int, message: str | None) -> bytes:
    """The protobuf ExportTraceServiceResponse (partial success when ``message`` is set)."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    response = trace_service_pb2.ExportTraceServiceResponse()
    if message is not None:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


@dataclass
class Mapped:
    """The outcome of one request: events to store, spans ignored, spans rejected (with reasons)."""

    events: list[events.CloudEvent] = field(default_factory=list)
    ignored: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def attribute_value(value: Any) -> Any:
    """The Python value of an OTLP JSON ``AnyValue`` (``{"stringValue": "x"}``, ``{"intValue": "3"}``, …)."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:  # int64 is a JSON string in the protobuf JSON mapping; numbers are accepted too
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return None
    if "doubleValue" in value:
        try:
            return float(value["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [attribute_value(item) for item in (value["arrayValue"] or {}).get("values", [])]
    return None


def attributes(items: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list → dict (later keys win; malformed entries skipped)."""
    found: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                found[item["key"]] = attribute_value(item.get("value"))
    return found


def _nanos(value: Any) -> int | None:
    try:
        nanos = int(value)
    except (TypeError, ValueError):
        return None
    return nanos if nanos > 0 else None


def _hex(text: str, digits: int) -> bool:
    return len(text) == digits and all(char in "0123456789abcdefABCDEF" for char in text)


def _list(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key) or []
    if not isinstance(value, list):
        raise OtlpError(f"{key} must be a list")
    return value


def span_event(span: dict[str, Any], resource: dict[str, Any]) -> tuple[events.CloudEvent | None, str | None]:
    """The ``run.llm_usage`` event of one GenAI span, or None and why it is rejected."""
    attrs = attributes(span.get("attributes"))
    trace_id, span_id = str(span.get("traceId") or ""), str(span.get("spanId") or "")
    where = f"span {span_id or '?'} of trace {trace_id or '?'}"
    if not _hex(trace_id, 32) or not _hex(span_id, 16):
        return None, f"{where}: traceId (32 hex digits) and spanId (16 hex digits) are required (they make the event id)"
    run_id = attrs.get("outrider.run_id") or resource.get("outrider.run_id")
    target = attrs.get("outrider.target") or resource.get("outrider.target")
    provider = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    missing = [name for name, value in (("outrider.run_id", run_id), ("gen_ai.provider.name", provider),
                                        ("gen_ai.request.model", model)) if not value]
    if missing:
        return None, f"{where}: no {', '.join(missing)} attribute"
    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    moment = end or start
    if moment is None:
        return None, f"{where}: no startTimeUnixNano or endTimeUnixNano"
    data: dict[str, Any] = {
        "provider": str(provider),
        "model": str(model),
        "input_tokens": attrs.get("gen_ai.usage.input_tokens", 0),
        "output_tokens": attrs.get("gen_ai.usage.output_tokens", 0),
        "trace_id": trace_id,
        "span_id": span_id,
    }
    if attrs.get("outrider.phase"):
        data["phase"] = str(attrs["outrider.phase"])
    if attrs.get("outrider.cost_usd") is not None:
        data["cost_usd"] = attrs["outrider.cost_usd"]
    if start is not None and end is not None and end >= start:
        data["latency_s"] = (end - start) / 1e9
    found_status = span.get("status")
    status: dict[str, Any] = found_status if isinstance(found_status, dict) else {}
    if status.get("code") in (STATUS_ERROR, "STATUS_CODE_ERROR"):
        data["error"] = str(status.get("message") or attrs.get("error.type") or "error")
    if resource.get("service.name"):
        data["service"] = str(resource["service.name"])
    try:
        when = datetime.fromtimestamp(moment / 1e9, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None, f"{where}: the span's time is out of range"
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"otlp-{trace_id.lower()}-{span_id.lower()}",
        "source": SOURCE,
        "type": events.EventType.RUN_LLM_USAGE.value,
        "time": when,
        "runid": str(run_id),
        "data": data,
    }
    if target:
        raw["target"] = str(target)
    event, problems = events.validate_event(raw)
    if event is None:
        return None, f"{where}: " + "; ".join(f"{p.field}: {p.message}" for p in problems)
    return event, None


def map_request(document: Any) -> Mapped:
    """Map a decoded ExportTraceServiceRequest; raises :class:`OtlpError` when its shape is wrong."""
    if not isinstance(document, dict):
        raise OtlpError("the body must be a JSON object (ExportTraceServiceRequest)")
    mapped = Mapped()
    for resource_spans in _list(document, "resourceSpans"):
        if not isinstance(resource_spans, dict):
            raise OtlpError("resourceSpans items must be objects")
        resource_part = resource_spans.get("resource") or {}
        if not isinstance(resource_part, dict):
            raise OtlpError("resource must be an object")
        resource = attributes(resource_part.get("attributes"))
        for scope_spans in _list(resource_spans, "scopeSpans"):
            if not isinstance(scope_spans, dict):
                raise OtlpError("scopeSpans items must be objects")
            for span in _list(scope_spans, "spans"):
                if not isinstance(span, dict):
                    mapped.rejected += 1
                    mapped.reasons.append("a span is not a JSON object")
                    continue
                if not any(key in attributes(span.get("attributes")) for key in USAGE_KEYS):
                    mapped.ignored += 1
                    continue
                event, reason = span_event(span, resource)
                if event is None:
                    mapped.rejected += 1
                    mapped.reasons.append(str(reason))
                else:
                    mapped.events.append(event)
    return mapped
