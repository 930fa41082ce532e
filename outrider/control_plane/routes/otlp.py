"""``POST /v1/otlp/v1/traces``: OTLP/HTTP JSON trace ingest; GenAI spans become ``run.llm_usage`` events.

An OpenTelemetry SDK or Collector exporting with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=<control plane>/v1/otlp/v1/traces``
(the bearer token in ``OTEL_EXPORTER_OTLP_HEADERS``; JSON always, protobuf when the ``otel`` extra is installed) feeds
the same store as ``POST /v1/events``: the mapping is in ``control_plane/otlp.py``; the events go through
the store's normal group commit. The answer follows the OTLP spec: 200 with ``{}`` when every span was
taken, or with ``partialSuccess`` counting the rejected spans and saying why.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from outrider.control_plane import auth, bodies, errors, otlp, principals, settings, store
from outrider.control_plane.principals import Principal

router = APIRouter(tags=["otlp"])

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
MAX_REASONS = 5


@router.post(
    "/v1/otlp/v1/traces",
    summary="Ingest OTLP/HTTP traces (GenAI spans become run.llm_usage events)",
    responses={
        200: {"description": "Stored; {} or a partialSuccess, in the request's encoding (ExportTraceServiceResponse).",
              "content": {JSON: {"schema": {"type": "object"}}, PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}},
        **errors.responses(400, 401, 403, 413, 415, 503),
    },
    response_class=JSONResponse,
    openapi_extra={"requestBody": {"required": True, "content": {
        JSON: {"schema": {"type": "object", "description": "An OTLP ExportTraceServiceRequest in the protobuf JSON mapping."}},
        PROTOBUF: {"schema": {"type": "string", "format": "binary", "description": "The same, protobuf-encoded (needs the otel extra)."}},
    }}},
)
async def traces(request: Request, principal: Annotated[Principal, Depends(auth.require_writer)]) -> Response:
    """Store one ``run.llm_usage`` event per GenAI span; see docs/opentelemetry.md for the mapping."""
    config: settings.Settings = request.app.state.settings
    store_: store.Store = request.app.state.store
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, PROTOBUF):
        raise errors.APIError(415, "unsupported_media_type", f"content type {content_type or 'none'!r} is not {JSON} or {PROTOBUF}")
    raw = await bodies.read(request, config.max_body_bytes)
    try:
        document = otlp.decode_protobuf(raw) if content_type == PROTOBUF else json.loads(raw)
        mapped = otlp.map_request(document)
    except otlp.ProtobufUnavailable as exc:
        raise errors.APIError(415, "unsupported_media_type", "OTLP/HTTP protobuf needs the otel extra (opentelemetry-proto), "
                              "which this server lacks; export with OTEL_EXPORTER_OTLP_PROTOCOL=http/json") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # OtlpError is a ValueError too
        raise errors.APIError(400, "malformed_otlp", f"not an OTLP ExportTraceServiceRequest: {exc}") from exc
    except RecursionError as exc:  # JSON nested past what the decoder recurses through
        raise errors.APIError(400, "malformed_otlp", "not an OTLP ExportTraceServiceRequest: nested too deeply") from exc
    refused, _ = principals.authorize(principal, mapped.events, datetime.now(UTC))
    if refused:
        request.app.state.audit.record("write.refused", "refused", principal, object=f"{len(refused)} OTLP spans",
                                       detail={"problems": [p.model_dump() for p in refused[:20]]})
        raise auth.forbidden(f"{len(refused)} spans may not be written with this credential; nothing was stored "
                             f"(first: {refused[0].message})")
    if mapped.events:
        try:
            await asyncio.wait_for(asyncio.wrap_future(store_.submit(mapped.events)), timeout=config.write_timeout_seconds)
        except (store.StoreUnavailable, TimeoutError) as exc:
            raise errors.APIError(503, "store_unavailable", f"the spans were not stored ({exc or 'timed out'}); retry") from exc
    message = _message(mapped)
    if content_type == PROTOBUF:  # OTLP answers in the request's encoding
        return Response(otlp.encode_protobuf_response(mapped.rejected, message), media_type=PROTOBUF)
    return JSONResponse({} if message is None else {"partialSuccess": {"rejectedSpans": mapped.rejected, "errorMessage": message}})


def _message(mapped: otlp.Mapped) -> str | None:
    """The partial-success message: the first reasons for rejected spans, and how many were ignored."""
    if not mapped.rejected and not mapped.ignored:
        return None
    notes = []
    if mapped.rejected:
        shown = "; ".join(mapped.reasons[:MAX_REASONS])
        more = f" (and {len(mapped.reasons) - MAX_REASONS} more)" if len(mapped.reasons) > MAX_REASONS else ""
        notes.append(f"{mapped.rejected} GenAI spans rejected: {shown}{more}")
    if mapped.ignored:
        notes.append(f"{mapped.ignored} spans without gen_ai.usage attributes ignored")
    return ". ".join(notes)
