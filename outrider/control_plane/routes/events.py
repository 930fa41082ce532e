"""``/v1/events``: ingestion (POST), the history (GET, filtered, cursor-paged) and the live stream (SSE).

Ingestion validates the whole request before anything is queued (all or nothing), then waits for the
store's group commit: a 202 means the events are durably committed. Every refusal is counted in
``outrider_events_rejected_total{reason}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from outrider.common import events
from outrider.control_plane import (
    auth,
    bodies,
    consistency,
    deps,
    errors,
    limits,
    params,
    principals,
    schemas,
    settings,
    store,
)

# The token is checked by a dependency on the reads and inline in ``ingest``: resolving a dependency costs the
# hot path more per request than validating a small event does.
router = APIRouter(tags=["events"])
log = logging.getLogger(__name__)
AUTHENTICATED = [Depends(auth.require_token)]

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PLAIN = "application/json"
CONTENT_TYPES = (SINGLE, PLAIN, BATCH)
#: Stored events replayed per read for a reconnecting stream: what one slow client can hold in memory at once.
REPLAY_PAGE = 200
#: JSON escapes of what no database stores: NUL, and UTF-16 surrogates (lone ones are not UTF-8).
UNSTORABLE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")

EVENT_SCHEMA = {"$ref": "#/components/schemas/CloudEvent"}
INGEST_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "One CloudEvent, or a batch (JSON array) with application/cloudevents-batch+json or application/json "
            "(structured and batch modes). Binary mode: a request with a ce-specversion header is one event whose "
            "attributes are the ce-* headers; its body, of any content type, is the data."
        ),
        "content": {
            SINGLE: {"schema": EVENT_SCHEMA},
            PLAIN: {"schema": {"anyOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA}]}},
            BATCH: {"schema": {"type": "array", "items": EVENT_SCHEMA}},
        },
    }
}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf, which JSON cannot carry back out
        raise ValueError(f"the number {text} is out of range")
    return value


def _parse(raw: bytes, content_type: str) -> list[Any]:
    """The decoded events of a body (a single event becomes a batch of one)."""
    try:
        document = json.loads(raw, parse_constant=_no_constants, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.APIError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the C decoder recurses per nesting level; 100k "[" ends here
        raise errors.APIError(400, "malformed_json", f"the body nests deeper than JSON decoding allows (at most {events.MAX_DEPTH} levels are accepted)") from exc
    if content_type == BATCH and not isinstance(document, list):
        raise errors.APIError(400, "malformed_json", f"{BATCH} needs a JSON array of events")
    if content_type == SINGLE and not isinstance(document, dict):
        raise errors.APIError(400, "malformed_json", f"{SINGLE} needs one JSON object; send arrays as {BATCH}")
    return document if isinstance(document, list) else [document]


#: A request in the CloudEvents HTTP binary mode carries its attributes as ``ce-*`` headers, this one always.
BINARY_MARKER = "ce-specversion"


def _is_json(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def _binary_event(request: Request, raw: bytes, media_type: str) -> list[Any]:
    """The one event of a binary-mode request (CloudEvents HTTP binding 3.1): attributes from the ``ce-*``
    headers, percent-decoded; ``Content-Type`` becomes ``datacontenttype``; a JSON body becomes ``data``, any
    other body ``data_base64`` (kept as sent, served back so); an empty body, no data."""
    event: dict[str, Any] = {}
    for name, value in request.headers.items():
        if name.startswith("ce-") and len(name) > 3 and name[3:] not in event:
            event[name[3:]] = urllib.parse.unquote(value)
    declared = request.headers.get("content-type")
    if declared:
        event["datacontenttype"] = declared
    if raw:
        if not declared or _is_json(media_type):
            try:
                event["data"] = json.loads(raw, parse_constant=_no_constants, parse_float=_finite)
            except RecursionError as exc:
                raise errors.APIError(400, "malformed_json", "the body nests deeper than JSON decoding allows") from exc
            except (ValueError, UnicodeDecodeError) as exc:
                if declared:
                    raise errors.APIError(400, "malformed_json", f"the body is {declared} but not valid JSON: {exc}") from exc
                event["data_base64"] = base64.b64encode(raw).decode("ascii")
        else:
            event["data_base64"] = base64.b64encode(raw).decode("ascii")
    return [event]


INGEST_PATH = "/v1/events"


@router.post(
    INGEST_PATH,
    status_code=202,
    response_model=schemas.IngestResult,
    summary="Ingest one event or a batch",
    responses=errors.responses(400, 401, 403, 408, 413, 415, 422, 429, 503, 507),
    openapi_extra=INGEST_BODY,
)
async def ingest(request: Request) -> Response:
    """Store events durably; 202 with how many were new and how many were already stored (same source and id)."""
    started = time.perf_counter()
    # The hot path reads the store and settings from app.state directly: each FastAPI dependency costs more
    # per request than validating a small event does.
    store_: store.Store = request.app.state.store
    config: settings.Settings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    binary = BINARY_MARKER in request.headers
    batch_size = 1
    try:
        principal = await auth.require_writer(request)
        if not binary and content_type not in CONTENT_TYPES:
            raise errors.APIError(
                415, "unsupported_media_type", f"content type {content_type or 'none'!r} is not one of {', '.join(CONTENT_TYPES)}"
            )
        raw = await bodies.read(request, config.max_body_bytes)
        request.app.state.ingest_rate.take(principal.key_id, len(raw))
        # A C-speed scan; the walk runs only on a hit (binary mode's attributes come from headers: always walked).
        unstorable = binary or UNSTORABLE.search(raw) is not None
        array = _is_array(raw)
        fast = None if unstorable else _validate_fast(raw, content_type, array)
        batch = fast if fast is not None else _binary_event(request, raw, content_type) if binary else _parse(raw, content_type)
        batch_size = len(batch)
        if batch_size > config.max_batch_events:
            raise errors.APIError(
                413, "batch_too_large", f"{batch_size} events in one request; at most {config.max_batch_events}"
            )
        accepted = fast if fast is not None else _validate_exact(batch, unstorable)
        refused, invalid, controls = principals.authorize(principal, accepted, datetime.now(UTC))
        if refused:
            request.app.state.audit.record(
                "write.refused", "refused", principal, object=f"{len(refused)} of {batch_size} events",
                remote=_remote(request), detail={"problems": [p.model_dump() for p in refused[:20]]})
            raise errors.APIError(
                403, "forbidden",
                f"{len(refused)} of {batch_size} events may not be written with this credential; nothing was stored "
                f"(first: {refused[0].message})",
                detail=[p.model_dump() for p in refused],
            )
        if invalid:
            raise errors.APIError(
                422, "invalid_event", f"{len(invalid)} of {batch_size} events are invalid; nothing was stored",
                detail=[p.model_dump() for p in invalid],
            )
        await request.app.state.quota.check(principal, accepted)  # 507 when a namespace is over its quota
    except errors.APIError as exc:
        await store_.record_rejection(exc.error, batch_size if exc.error in ("invalid_event", "batch_too_large") else 1)
        raise
    if not accepted:
        return _ingested(0, 0, None)
    try:
        async with asyncio.timeout(config.write_timeout_seconds):  # cheaper per request than wait_for's task
            new, duplicates, position = await store_.submit_async(accepted)
    except (store.StoreUnavailable, TimeoutError) as exc:
        raise errors.APIError(503, "store_unavailable", f"the events were not stored ({exc or 'timed out'}); retry") from exc
    request.app.state.metrics.ingest_seconds.observe(time.perf_counter() - started)
    if controls:
        _audit_control(request, principal, controls)
    return _ingested(new, duplicates, position)


def _is_array(raw: bytes) -> bool:
    """Whether a body's JSON is an array (else an object, or not JSON): its first character that is not space."""
    head = raw[:1] if raw[:1] in (b"[", b"{") else raw.lstrip()[:1]
    return head == b"["


def _validate_fast(raw: bytes, content_type: str, array: bool) -> list[events.CloudEvent] | None:
    """A valid body's events, parsed and validated in one pydantic-core call (``events.validate_json_fast``);
    None: the body goes the exact way, which says what is wrong with it."""
    if content_type == (SINGLE if array else BATCH):
        return None
    return events.validate_json_fast(raw, array=array)


def _validate_exact(batch: list[Any], unstorable: bool) -> list[events.CloudEvent]:
    """Validate decoded items event by event: the events, or every problem of every event, worded (422)."""
    accepted: list[events.CloudEvent] = []
    problems: list[events.EventProblem] = []
    # One depth check for the whole batch (one level more: the list); on a hit, each event is checked alone.
    shallow = not events.nests_deeper_than(batch, events.MAX_DEPTH + 1)
    for index, item in enumerate(batch):
        event, found = events.validate_event(item, index, depth_checked=shallow)
        if unstorable:
            found = found + events.unstorable_problems(item, index)
            event = event if not found else None
        problems.extend(found)
        if event is not None:
            accepted.append(event)
    if problems:
        raise errors.APIError(
            422,
            "invalid_event",
            f"{len({p.index for p in problems})} of {len(batch)} events are invalid; nothing was stored",
            detail=[p.model_dump() for p in problems],
        )
    return accepted


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _audit_control(request: Request, principal: principals.Principal, controls: list[events.CloudEvent]) -> None:
    """Every accepted control event in the audit log (who spoke for the operator, what, when). A heartbeat is
    recorded only when it comes from another credential than the last one did: one every 30 s from the same
    operator says nothing the liveness metrics do not, and would drown the rest."""
    state = request.app.state
    for event in controls:
        if event.type == events.EventType.OPERATOR_HEARTBEAT:
            if state.last_heartbeat_actor == principal.key_id:
                continue
            state.last_heartbeat_actor = principal.key_id
        state.audit.record(
            "event.control", "ok", principal, object=f"{event.type} {event.namespace}/{event.target or '-'}",
            remote=_remote(request), detail={"id": event.id, "source": event.source, "time": event.time.isoformat()})


async def serve_ingest(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/events`` served straight from the app's ASGI entry (``app.ControlPlane``), without FastAPI's
    middleware, routing and dependency resolution: those cost each single-event request more than the
    endpoint's own work (docs/performance.md). Same handler, same answers, errors in the same JSON shape."""
    try:
        response = await ingest(Request(scope, receive, send))
    except ClientDisconnect:
        return  # the client left before its body arrived: nothing was queued, nobody to answer
    except errors.APIError as exc:
        response = errors.for_api_error(exc)
    except Exception as exc:  # noqa: BLE001 — the client gets the JSON 500 that every other route gives
        log.exception("POST /v1/events failed")
        response = errors.for_unexpected(exc)
    await response(scope, receive, send)


def _ingested(accepted: int, duplicates: int, position: int | None) -> Response:
    """The 202 answer (``schemas.IngestResult``, and the position also as the ``Outrider-Position`` header),
    written directly: validating and serialising the response model costs more per single-event request than
    the event itself."""
    if position is None:
        return Response(f'{{"accepted":{accepted},"duplicates":{duplicates},"position":null}}', status_code=202,
                        media_type="application/json")
    return Response(f'{{"accepted":{accepted},"duplicates":{duplicates},"position":{position}}}', status_code=202,
                    media_type="application/json", headers={consistency.POSITION_HEADER: str(position)})


@router.get(
    "/v1/events",
    response_model=schemas.Page[schemas.StoredEvent],
    summary="List stored events",
    responses=errors.responses(401, 422, 503),
    dependencies=AUTHENTICATED,
)
def list_events(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    target: str | None = None,
    run_id: str | None = None,
    type: Annotated[str | None, Query(description="Event type, e.g. run.failed.")] = None,
    since: Annotated[datetime | None, Query(description="Events whose time is at or after this (RFC 3339).")] = None,
    until: Annotated[datetime | None, Query(description="Events whose time is before this (RFC 3339).")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Events in arrival order (``seq``), oldest first; with ``since`` or ``until``, in event-time order (ties by
    ``seq``). Follow ``next_cursor`` until it is null."""
    since, until = params.aware(since), params.aware(until)
    by_time = since is not None or until is not None  # a time window pages along the time index (store docstring)
    if by_time:
        after = _time_position(cursor) if cursor else None
        timed = store_.list_event_rows_by_time(
            target=target, run_id=run_id, type=type, since=since, until=until, after=after, limit=limit + 1, scope=scope
        )
        rows = [(seq, received, body) for seq, _, received, body in timed]
    else:
        after_seq = _seq_position(cursor) if cursor else 0
        rows = store_.list_event_rows(
            target=target, run_id=run_id, type=type, after_seq=after_seq, limit=limit + 1, scope=scope
        )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and by_time:
        next_cursor = params.encode_cursor({"time": timed[limit - 1][1].isoformat(), "seq": rows[-1][0]})
    elif more:
        next_cursor = params.encode_cursor({"seq": rows[-1][0]})
    # Bodies are stored as validated JSON: the page is assembled around them as text instead of parsing,
    # validating and re-serializing up to 1000 events (the response model above still documents the shape).
    items = ",".join(
        f'{{"seq":{seq},"received_at":{json.dumps(_rfc3339(received))},"event":{body}}}' for seq, received, body in rows
    )
    cursor_json = json.dumps(next_cursor)
    return Response(f'{{"items":[{items}],"next_cursor":{cursor_json}}}', media_type="application/json")


def _seq_position(cursor: str) -> int:
    position = params.decode_cursor(cursor, "seq")
    if "time" in position:  # a time-ordered listing's cursor: it cannot continue a seq-ordered one
        raise errors.APIError(422, "invalid_cursor", "the cursor belongs to a listing with since/until")
    return params.seq(position["seq"])


def _time_position(cursor: str) -> tuple[datetime, int]:
    """The (time, seq) a time-ordered page's cursor encodes; 422 for any other cursor (e.g. one of a seq-ordered
    listing: the two orders cannot continue each other)."""
    position = params.decode_cursor(cursor, "time", "seq")
    return params.moment(position["time"]), params.seq(position["seq"])


def _rfc3339(moment: datetime) -> str:
    """The form pydantic gives a UTC datetime elsewhere in the API (``…Z``)."""
    return moment.isoformat().replace("+00:00", "Z")


def _sse(item: dict[str, Any]) -> str:
    """One SSE message: ``id`` the event's position (``seq``, what ``Last-Event-ID`` resumes from), ``event`` its
    type, ``data`` the stored CloudEvent itself in the JSON format, so any CloudEvents consumer can parse it."""
    payload = json.dumps(item["event"], separators=(",", ":"))
    return f"id: {item['seq']}\nevent: {item['event'].get('type', 'message')}\ndata: {payload}\n\n"


@router.get(
    "/v1/events/stream",
    summary="Live stream of newly stored events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "text/event-stream: one SSE message per stored event (id = seq, event = type, data = the CloudEvent, JSON format).", "content": {"text/event-stream": {}}},
        **errors.responses(401, 422, 429),
    },
    dependencies=AUTHENTICATED,
)
async def stream(
    request: Request,
    store_: deps.StoreDep,
    config: deps.SettingsDep,
    scope: deps.ScopeDep,
    target: str | None = None,
    run_id: str | None = None,
    type: str | None = None,
    after: Annotated[int | None, Query(ge=0, le=params.MAX_SEQ, description="Replay stored events after this seq first (also read from Last-Event-ID).")] = None,
) -> StreamingResponse:
    """Every event committed from now on (optionally filtered), with a keep-alive comment every ~15 s.

    A client that reconnects with ``Last-Event-ID`` (or ``?after=``) first gets the stored events it
    missed, then the live ones. A client too slow to keep up gets ``event: dropped`` and is
    disconnected; it reconnects with its last id.
    """
    last = params.last_event_id(request.headers.get("last-event-id"))
    if after is None and last is not None:
        after = last
    slots: limits.StreamSlots = request.app.state.streams
    holder = request.state.principal.key_id
    slots.take(holder)  # 429 beyond the server's or this credential's live streams
    subscription = store_.subscribe()

    def wanted(event: dict[str, Any]) -> bool:
        return (
            scope.sees(event.get("namespace"), event.get("target"))
            and (target is None or event.get("target") == target)
            and (run_id is None or event.get("runid") == run_id)
            and (type is None or event.get("type") == type)
        )

    async def generate() -> AsyncIterator[str]:
        sent = after or 0
        try:
            yield f"retry: 3000\n: connected at seq {sent}\n\n"
            while after is not None:  # replay what the client missed, page by page, before going live
                try:
                    missed = await asyncio.to_thread(
                        store_.list_events, target=target, run_id=run_id, type=type, after_seq=sent, limit=REPLAY_PAGE, scope=scope
                    )
                except store.ProjectionLagging:  # the index has not caught up with the log yet: keep the client
                    yield ": waiting for the projection\n\n"
                    continue
                for item in missed:
                    sent = max(sent, item["seq"])
                    yield _sse(item)
                if len(missed) < REPLAY_PAGE:
                    break
            while True:
                try:
                    batch = await subscription.next(timeout=config.sse_keepalive_seconds)
                except store.SubscriberDropped:
                    yield "event: dropped\ndata: {\"reason\": \"client too slow\"}\n\n"
                    return
                except store.SubscriptionEnded:
                    yield "event: shutdown\ndata: {\"reason\": \"server stopping; reconnect with Last-Event-ID\"}\n\n"
                    return
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for item in batch:
                    if item["seq"] > sent and wanted(item["event"]):
                        sent = item["seq"]
                        yield _sse(item)
        finally:
            store_.unsubscribe(subscription)
            slots.give(holder)

    return StreamingResponse(
        generate(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


