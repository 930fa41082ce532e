"""``POST /v1/otlp/v1/traces`` and ``/v1/otlp/v1/logs``: OTLP/HTTP ingest; GenAI spans become ``run.llm_usage``
events, log records that name a run ``run.log`` events (``otlp.py``, ``otlp_logs.py``); metrics are a clear 404.

An OpenTelemetry SDK or Collector exporting with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<control plane>/v1/otlp/v1/traces``
(the bearer token in ``OTEL_EXPORTER_OTLP_HEADERS``; JSON always, protobuf when the ``otel`` extra is installed) feeds
the same store as ``POST /v1/events``: the mapping is in ``control_plane/otlp.py``; the events go through
the store's normal group commit. The answer follows the OTLP spec: 200 with ``{}`` when every span was
taken, or with ``partialSuccess`` counting the rejected spans and saying why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from outrider.control_plane import auth, bodies, consistency, errors, otlp, otlp_logs, principals, settings, store
from outrider.control_plane.principals import Principal

router = APIRouter(tags=["otlp"])

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
MAX_REASONS = 5


@dataclasses.dataclass(frozen=True)
class Signal:
    """One OTLP signal this API takes: how its body decodes and maps, and how its answer is written."""

    name: str  # traces, logs
    request: str  # the OTLP request message, for errors
    decode_protobuf: Callable[[bytes], dict[str, Any]]
    map_request: Callable[[Any], otlp.Mapped]
    encode_protobuf_response: Callable[[int, str | None], bytes]
    rejected_field: str  # rejectedSpans, rejectedLogRecords
    noun: str  # what is counted: spans, log records
    ignored_because: str


TRACES = Signal("traces", "ExportTraceServiceRequest", otlp.decode_protobuf, otlp.map_request, otlp.encode_protobuf_response,
                "rejectedSpans", "GenAI spans", "spans without gen_ai.usage attributes ignored")
LOGS = Signal("logs", "ExportLogsServiceRequest", otlp_logs.decode_protobuf, otlp_logs.map_request,
              otlp_logs.encode_protobuf_response, "rejectedLogRecords", "log records",
              "log records naming no run (outrider.run_id on the record or its resource) ignored")


def _openapi(signal: Signal) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        JSON: {"schema": {"type": "object", "description": f"An OTLP {signal.request} in the protobuf JSON mapping."}},
        PROTOBUF: {"schema": {"type": "string", "format": "binary", "description": "The same, protobuf-encoded (needs the otel extra)."}},
    }}}


def _responses(signal: Signal) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": f"Stored; {{}} or a partialSuccess, in the request's encoding ({signal.request.replace('Request', 'Response')}).",
              "content": {JSON: {"schema": {"type": "object"}}, PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}},
        **errors.responses(400, 401, 403, 408, 413, 415, 429, 503, 507),
    }


@router.post("/v1/otlp/v1/traces", summary="Ingest OTLP/HTTP traces (GenAI spans become run.llm_usage events)",
             responses=_responses(TRACES), response_class=JSONResponse, openapi_extra=_openapi(TRACES))
async def traces(request: Request, principal: Annotated[Principal, Depends(auth.require_writer)]) -> Response:
    """Store one ``run.llm_usage`` event per GenAI span; see docs/opentelemetry.md for the mapping."""
    return await _ingest(request, principal, TRACES)


@router.post("/v1/otlp/v1/logs", summary="Ingest OTLP/HTTP logs (records naming a run become run.log events)",
             responses=_responses(LOGS), response_class=JSONResponse, openapi_extra=_openapi(LOGS))
async def logs(request: Request, principal: Annotated[Principal, Depends(auth.require_writer)]) -> Response:
    """Store one ``run.log`` event per log record that names a run; see docs/opentelemetry.md for the mapping."""
    return await _ingest(request, principal, LOGS)


@router.post("/v1/otlp/v1/metrics", summary="OTLP metrics are not ingested (404, on purpose)",
             responses=errors.responses(404), response_class=JSONResponse)
async def metrics() -> Response:
    """Outrider derives its metrics from events; it stores no OTLP metrics. A 404 makes exporters drop them
    instead of retrying; send traces (GenAI spans) and logs instead."""
    raise errors.APIError(404, "not_found", "OTLP metrics are not ingested by Outrider; export traces "
                                            "(/v1/otlp/v1/traces) and logs (/v1/otlp/v1/logs) instead")


async def _ingest(request: Request, principal: Principal, signal: Signal) -> Response:
    config: settings.Settings = request.app.state.settings
    store_: store.Store = request.app.state.store
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, PROTOBUF):
        raise errors.APIError(415, "unsupported_media_type", f"content type {content_type or 'none'!r} is not {JSON} or {PROTOBUF}")
    raw = await bodies.read(request, config.max_body_bytes)
    request.app.state.ingest_rate.take(principal.key_id, len(raw))
    try:
        document = signal.decode_protobuf(raw) if content_type == PROTOBUF else json.loads(raw)
        mapped = signal.map_request(document)
    except otlp.ProtobufUnavailable as exc:
        raise errors.APIError(415, "unsupported_media_type", "OTLP/HTTP protobuf needs the otel extra (opentelemetry-proto), "
                              "which this server lacks; export with OTEL_EXPORTER_OTLP_PROTOCOL=http/json") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # OtlpError is a ValueError too
        raise errors.APIError(400, "malformed_otlp", f"not an OTLP {signal.request}: {exc}") from exc
    except RecursionError as exc:  # JSON nested past what the decoder recurses through
        raise errors.APIError(400, "malformed_otlp", f"not an OTLP {signal.request}: nested too deeply") from exc
    refused, _, _ = principals.authorize(principal, mapped.events, datetime.now(UTC))
    if refused:
        request.app.state.audit.record("write.refused", "refused", principal, object=f"{len(refused)} OTLP {signal.noun}",
                                       detail={"problems": [p.model_dump() for p in refused[:20]]})
        raise auth.forbidden(f"{len(refused)} {signal.noun} may not be written with this credential; nothing was stored "
                             f"(first: {refused[0].message})")
    await request.app.state.quota.check(principal, mapped.events)  # 507 when a namespace is over its quota
    headers = {}
    if mapped.events:
        try:
            _, _, position = await asyncio.wait_for(asyncio.wrap_future(store_.submit(mapped.events)), timeout=config.write_timeout_seconds)
        except (store.StoreUnavailable, TimeoutError) as exc:
            raise errors.APIError(503, "store_unavailable", f"the {signal.noun} were not stored ({exc or 'timed out'}); retry") from exc
        headers[consistency.POSITION_HEADER] = str(position)  # OTLP's body has no room for it
    message = _message(mapped, signal)
    if content_type == PROTOBUF:  # OTLP answers in the request's encoding
        return Response(signal.encode_protobuf_response(mapped.rejected, message), media_type=PROTOBUF, headers=headers)
    return JSONResponse({} if message is None else {"partialSuccess": {signal.rejected_field: mapped.rejected, "errorMessage": message}},
                        headers=headers)


def _message(mapped: otlp.Mapped, signal: Signal) -> str | None:
    """The partial-success message: the first reasons for rejected items, and how many were ignored."""
    if not mapped.rejected and not mapped.ignored:
        return None
    notes = []
    if mapped.rejected:
        shown = "; ".join(mapped.reasons[:MAX_REASONS])
        more = f" (and {len(mapped.reasons) - MAX_REASONS} more)" if len(mapped.reasons) > MAX_REASONS else ""
        notes.append(f"{mapped.rejected} {signal.noun} rejected: {shown}{more}")
    if mapped.ignored:
        notes.append(f"{mapped.ignored} {signal.ignored_because}")
    return ". ".join(notes)
