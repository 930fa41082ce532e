"""CPU per event of the ingestion path in one process, without HTTP: parse + validate, and the store's writer.

The machine the bench runs on is shared, so wall-clock rates drift with other work; CPU time per event
(user and system, from ``getrusage``) moves much less and is what an optimisation of the store should be
judged by, before and after in the same sitting. The writer's groups are formed like the writer forms them
under load (32 requests of 100 events, and 32 single-event requests) and committed with
``Store._commit_group`` on a fresh SQLite file (``synchronous=FULL``), by hand: no writer thread. ``measure_app`` drives the whole app (routing, token, validation, writer thread,
answers) in-process over ASGI with 32 closed-loop clients posting single events: the cycle the end-to-end
single-event cell measures, without uvicorn's HTTP parsing and without a second process's noise.

    python -m bench.store_cpu [groups] [requests per client for the in-process app]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import itertools
import resource
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench import payloads

CLIENTS = 32


def _usage(action: Callable[[], Any], events: int) -> dict[str, float]:
    """User and system CPU µs per event of ``action``, and its events per wall-clock second."""
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    action()
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
    return {
        "user_us": (after.ru_utime - before.ru_utime) / events * 1e6,
        "system_us": (after.ru_stime - before.ru_stime) / events * 1e6,
        "events_per_s": events / elapsed if elapsed else 0.0,
    }


def measure(groups: int = 20, workdir: Path | None = None) -> dict[str, dict[str, float]]:
    """The figures of one sitting: validation and writer, for batches of 100 and single events."""
    from outrider.common import events
    from outrider.control_plane import settings, store
    from outrider.control_plane.routes import events as event_routes

    stream = payloads.event_stream("store-cpu")
    bodies = [b"[" + b",".join(itertools.islice(stream, 100)) + b"]" for _ in range(groups * CLIENTS)]
    singles = [next(stream) for _ in range(groups * CLIENTS)]

    def validate(body: bytes, content_type: str) -> list[events.CloudEvent]:
        accepted = []
        for index, item in enumerate(event_routes._parse(body, content_type)):
            event, problems = events.validate_event(item, index)
            assert event is not None, problems
            accepted.append(event)
        return accepted

    figures: dict[str, dict[str, float]] = {}
    batches: list[list[events.CloudEvent]] = []
    figures["validate batch100"] = _usage(lambda: batches.extend(validate(b, event_routes.BATCH) for b in bodies), len(bodies) * 100)
    one_each: list[list[events.CloudEvent]] = []
    figures["validate single"] = _usage(lambda: one_each.extend(validate(b, event_routes.SINGLE) for b in singles), len(singles))

    directory = workdir or Path(tempfile.mkdtemp(prefix="store-cpu-"))
    the_store = store.Store(settings.Settings(database_url=f"sqlite:///{directory / 'store.db'}", api_tokens="bench"))
    store.migrate(the_store.engine)
    try:
        for name, requests in (("writer 32x100", batches), ("writer 32x1", one_each)):

            def commit_all(requests: list[list[events.CloudEvent]] = requests) -> None:
                for start in range(0, len(requests), CLIENTS):
                    futures: list[concurrent.futures.Future[tuple[int, int]]] = [
                        concurrent.futures.Future() for _ in requests[start : start + CLIENTS]
                    ]
                    the_store._commit_group(
                        [store.Submission(batch, future) for batch, future in zip(requests[start : start + CLIENTS], futures, strict=True)]
                    )
                    for future in futures:
                        future.result(timeout=0)

            figures[name] = _usage(commit_all, sum(len(batch) for batch in requests))
    finally:
        the_store.engine.dispose()
    return figures


def measure_app(requests_per_client: int = 200, workdir: Path | None = None, batch: int | None = None) -> dict[str, float]:
    """CPU per event of the whole app posting single events (or ``batch`` events per request) from 32 concurrent
    closed-loop clients (ASGI in-process)."""
    from outrider.control_plane import app as app_module
    from outrider.control_plane import settings, store

    directory = workdir or Path(tempfile.mkdtemp(prefix="store-cpu-app-"))
    # The writer thread: this measures one process's CPU (getrusage), which would not see a writer process.
    config = settings.Settings(database_url=f"sqlite:///{directory / 'app.db'}", api_tokens="bench", store_writer="thread",
                               key_requests_per_second=0, key_ingest_bytes_per_second=0)
    engine = store.make_engine(config.database_url)
    store.migrate(engine)
    engine.dispose()
    application = app_module.create_app(config)
    stream = payloads.event_stream("store-cpu-app")
    content_type = b"application/cloudevents+json" if batch is None else b"application/cloudevents-batch+json"
    headers = [(b"authorization", b"Bearer bench"), (b"content-type", content_type)]

    def body() -> bytes:
        if batch is None:
            return next(stream)
        return b"[" + b",".join(itertools.islice(stream, batch)) + b"]"

    async def post(body: bytes) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # the app reads one body message; asking again means it waits for a disconnect
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        statuses: list[int] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/events", "raw_path": b"/v1/events", "query_string": b"", "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }
        await application(scope, receive, send)
        if statuses != [202]:
            raise RuntimeError(f"POST /v1/events answered {statuses}")

    async def client() -> None:
        for _ in range(requests_per_client):
            await post(body())

    async def run() -> dict[str, float]:
        gc.collect()
        gc.freeze()  # like ``server.serve``: what is loaded before serving is never traversed by collections
        async with application.router.lifespan_context(application):
            await asyncio.gather(*(post(body()) for _ in range(2 * CLIENTS)))  # warm-up: caches, first groups
            before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            await asyncio.gather(*(client() for _ in range(CLIENTS)))
            after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
        count = CLIENTS * requests_per_client * (batch or 1)
        return {
            "user_us": (after.ru_utime - before.ru_utime) / count * 1e6,
            "system_us": (after.ru_stime - before.ru_stime) / count * 1e6,
            "events_per_s": count / elapsed if elapsed else 0.0,
        }

    try:
        return asyncio.run(run())
    finally:
        gc.unfreeze()


def main() -> None:
    groups = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    requests_per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    figures = measure(groups)
    figures["app single c=32"] = measure_app(requests_per_client)
    figures["app batch100 c=32"] = measure_app(max(1, requests_per_client // 20), batch=100)
    for name, figure in figures.items():
        print(
            f"{name:18s} user {figure['user_us']:7.1f} µs/event  system {figure['system_us']:6.1f} µs/event"
            f"  ({figure['events_per_s']:,.0f} events/s wall)"
        )


if __name__ == "__main__":
    main()
