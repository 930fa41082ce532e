"""The two baselines the control plane's ingestion is measured against, on the same FastAPI/uvicorn stack.

- ``noop``: ``POST /v1/events`` reads the body, parses the JSON and answers 202 with the same
  ``IngestResult`` shape. It stores nothing: the ceiling of the HTTP stack on this machine.
- ``validate`` (informational): the no-op plus validation of every event against the event contract as the
  real endpoint validates (a valid body in one call, ``validate_json_fast``; else ``validate_event`` per event),
  still storing nothing; the gap between it and the real
  endpoint is what the store costs, the gap to ``noop`` what validation costs.
- ``ndjson``: the same as ``noop``, then appends one JSON line per event to a file the way the seed's store did:
  under a lock, open for append, write, fsync, close, for every request. Durable, but one fsync per request.

Both check the bearer token like the real endpoint, so the per-request work outside the store matches.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from outrider.common import events as contract


def _events_in(body: bytes) -> list[object] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, list) else [payload]


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "unauthorized", "message": "a valid bearer token is required"}, status_code=401)


def noop_app(token: str) -> FastAPI:
    """The HTTP ceiling: parse, acknowledge, forget."""
    app = FastAPI(title="bench no-op baseline")
    expected = f"Bearer {token}"

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=202)
    async def ingest(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return _unauthorized()
        events = _events_in(await request.body())
        if events is None:
            return JSONResponse({"error": "invalid_json", "message": "body is not JSON"}, status_code=400)
        return JSONResponse({"accepted": len(events), "duplicates": 0}, status_code=202)

    return app


def validate_app(token: str) -> FastAPI:
    """Parse and validate every event like the real endpoint, then forget: the HTTP + validation ceiling."""
    app = FastAPI(title="bench validate baseline")
    expected = f"Bearer {token}"

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=202)
    async def ingest(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return _unauthorized()
        body = await request.body()
        fast = contract.validate_json_fast(body, array=body.lstrip()[:1] == b"[")
        if fast is not None:
            return JSONResponse({"accepted": len(fast), "duplicates": 0}, status_code=202)
        events = _events_in(body)
        if events is None:
            return JSONResponse({"error": "invalid_json", "message": "body is not JSON"}, status_code=400)
        problems = []
        for index, raw in enumerate(events):
            _event, found = contract.validate_event(raw, index)
            problems.extend(found)
        if problems:
            detail = [p.model_dump() for p in problems[:20]]
            return JSONResponse({"error": "invalid_event", "message": "invalid", "detail": detail}, status_code=422)
        return JSONResponse({"accepted": len(events), "duplicates": 0}, status_code=202)

    return app


def ndjson_app(token: str, path: Path) -> FastAPI:
    """The seed's store: every request appends its events to one NDJSON file and fsyncs, under a lock."""
    app = FastAPI(title="bench NDJSON baseline")
    expected = f"Bearer {token}"
    lock = threading.Lock()

    def append(lines: bytes) -> None:
        with lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/events", status_code=202)
    async def ingest(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return _unauthorized()
        events = _events_in(await request.body())
        if events is None:
            return JSONResponse({"error": "invalid_json", "message": "body is not JSON"}, status_code=400)
        lines = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events).encode()
        await anyio.to_thread.run_sync(append, lines)
        return JSONResponse({"accepted": len(events), "duplicates": 0}, status_code=202)

    return app
