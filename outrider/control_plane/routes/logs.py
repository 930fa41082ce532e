"""``/v1/runs/{run_id}/logs``: a run's ``run.log`` lines as JSON pages, or followed live as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from outrider.common import events
from outrider.control_plane import auth, deps, errors, insights, limits, params, schemas, store

router = APIRouter(tags=["runs"], dependencies=[Depends(auth.require_token)])

Level = Literal["debug", "info", "warning", "error", "critical"]
SCAN = 1000  # stored log events read per query while filling a page


def _page(store_: store.Store, run_id: str, level: str, after: int, limit: int,
          scope: store.Scope = store.EVERYTHING) -> tuple[list[dict[str, Any]], int, bool]:
    """Up to ``limit`` lines at or above ``level`` after seq ``after``; (lines, last seq scanned, more stored)."""
    lines: list[dict[str, Any]] = []
    scanned = after
    while len(lines) < limit:
        rows = store_.list_event_rows(run_id=run_id, type=events.EventType.RUN_LOG, after_seq=scanned, limit=SCAN, scope=scope)
        if not rows:
            return lines, scanned, False
        for row in rows:
            found = insights.log_lines([row], level)
            scanned = row[0]
            lines.extend(found)
            if len(lines) >= limit:
                return lines, scanned, True
        if len(rows) < SCAN:
            return lines, scanned, False
    return lines, scanned, True


@router.get(
    "/v1/runs/{run_id}/logs",
    response_model=schemas.LogPage,
    summary="A run's log lines (run.log events), oldest first; ?follow=true streams them (SSE)",
    responses={
        200: {"description": "JSON LogPage, or with follow=true text/event-stream: one `event: log` per line (id = seq, data = LogLine JSON).",
              "content": {"text/event-stream": {}}},
        **errors.responses(401, 422, 429, 503),
    },
)
async def run_logs(
    request: Request,
    run_id: str,
    store_: deps.StoreDep,
    config: deps.SettingsDep,
    scope: deps.ScopeDep,
    level: Annotated[Level, Query(description="Minimum level: lines at this level or above.")] = "debug",
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    follow: Annotated[bool, Query(description="Stream: stored lines after the cursor, then new ones as they are stored.")] = False,
) -> Any:
    after = params.seq(params.decode_cursor(cursor, "seq")["seq"]) if cursor else 0
    if not follow:
        lines, scanned, more = await asyncio.to_thread(_page, store_, run_id, level, after, limit, scope)
        return {"items": lines, "next_cursor": params.encode_cursor({"seq": scanned}) if more else None}

    slots: limits.StreamSlots = request.app.state.streams
    holder = request.state.principal.key_id
    slots.take(holder)  # 429 beyond the server's or this credential's live streams
    subscription = store_.subscribe()  # before the backlog read, so nothing committed in between is missed

    def sse(line: dict[str, Any]) -> str:
        return f"id: {line['seq']}\nevent: log\ndata: {json.dumps(line, separators=(',', ':'))}\n\n"

    async def generate() -> AsyncIterator[str]:
        sent = after
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    lines, scanned, more = await asyncio.to_thread(_page, store_, run_id, level, sent, 1000, scope)
                except store.ProjectionLagging:  # the index has not caught up with the log yet: keep the client
                    yield ": waiting for the projection\n\n"
                    continue
                for line in lines:
                    yield sse(line)
                sent = max(sent, scanned)
                if not more:
                    break
            while True:
                try:
                    batch = await subscription.next(timeout=config.sse_keepalive_seconds)
                except store.SubscriberDropped:
                    yield "event: dropped\ndata: {\"reason\": \"client too slow\"}\n\n"
                    return
                except store.SubscriptionEnded:
                    yield "event: shutdown\ndata: {\"reason\": \"server stopping\"}\n\n"
                    return
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for item in batch:
                    event = item["event"]
                    if (item["seq"] <= sent or event.get("runid") != run_id or event.get("type") != events.EventType.RUN_LOG
                            or not scope.sees(event.get("namespace"), event.get("target"))):
                        continue
                    sent = item["seq"]
                    for line in insights.log_lines([(item["seq"], item["received_at"], json.dumps(event))], level):
                        yield sse(line)
        finally:
            store_.unsubscribe(subscription)
            slots.give(holder)

    return StreamingResponse(generate(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
