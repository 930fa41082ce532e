"""GET /v1/events/stream (Server-Sent Events) on a real server: live events, filters, replay after
Last-Event-ID, keep-alive comments, and a slow subscriber dropped without holding the writer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from outrider.control_plane import store as store_module
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def messages(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """SSE messages as dicts (comments under 'comment')."""
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if current:
                yield current
            current = {}
        elif line.startswith(":"):
            current.setdefault("comment", []).append(line[1:].strip())
        else:
            field, _, value = line.partition(":")
            current[field] = value.lstrip(" ")


def open_stream(server: RunningServer, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {support.TOKEN}"} | params.pop("headers", {})
    return httpx.stream("GET", f"{server.url}/v1/events/stream", params=params, headers=headers, timeout=httpx.Timeout(10.0))


@pytest.fixture
def server(make_sqlite_settings, start_server) -> RunningServer:  # type: ignore[no-untyped-def]
    """The stream does not depend on the database: SQLite only."""
    return start_server(make_sqlite_settings())


def test_live_events_with_filters(server: RunningServer) -> None:
    with open_stream(server, run_id="run-live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = messages(response.iter_lines())
        hello = next(stream)
        assert "retry" in hello
        server.client.post("/v1/events", json=support.event("run.created", "run-other"))
        server.client.post("/v1/events", json=support.event("run.created", "run-live"))
        message = next(stream)
        assert message["event"] == "run.created"
        data = json.loads(message["data"])
        assert data["runid"] == "run-live" and data["specversion"] == "1.0"  # data is the CloudEvent itself
        assert int(message["id"]) == 2


def test_replay_after_last_event_id(server: RunningServer) -> None:
    batch = [support.event("run.log", "run-r", at=i, data={"level": "info", "message": str(i)}) for i in range(5)]
    server.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    with open_stream(server, headers={"Last-Event-ID": "2"}) as response:
        stream = messages(response.iter_lines())
        next(stream)
        replayed = [int(next(stream)["id"]) for _ in range(3)]
        assert replayed == [3, 4, 5]
        server.client.post("/v1/events", json=support.event("run.created", "run-r2"))
        assert int(next(stream)["id"]) == 6


def test_replay_pages_through_everything_missed(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from outrider.control_plane.routes import events as event_routes

    monkeypatch.setattr(event_routes, "REPLAY_PAGE", 4)  # small pages, so the replay must turn several
    batch = [support.event("run.log", "run-m", at=i, data={"level": "info", "message": str(i)}) for i in range(10)]
    server.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    with open_stream(server, after=1) as response:
        stream = messages(response.iter_lines())
        next(stream)
        assert [int(next(stream)["id"]) for _ in range(9)] == list(range(2, 11))


def test_keep_alive_comment(make_sqlite_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_sqlite_settings(sse_keepalive_seconds=0.2))
    with open_stream(server) as response:
        stream = messages(response.iter_lines())
        next(stream)
        assert next(stream) == {"comment": ["keep-alive"]}


async def test_slow_subscriber_is_dropped_not_waited_for(make_sqlite_settings) -> None:  # type: ignore[no-untyped-def]
    the_store = store_module.Store(make_sqlite_settings())
    the_store.open()
    try:
        slow = the_store.subscribe(max_events=3)
        fast = the_store.subscribe(max_events=100)
        for index in range(5):
            event, _ = support_events(index)
            result = await asyncio.wrap_future(the_store.submit([event]))
            assert result[:2] == (1, 0)  # the writer never waits for subscribers
        assert len(await fast.next(timeout=1)) == 5
        with pytest.raises(store_module.SubscriberDropped):
            await slow.next(timeout=1)
    finally:
        the_store.close()


def support_events(index: int) -> tuple[Any, list[Any]]:
    from outrider.common import events

    return events.validate_event(support.event("run.created", f"run-{index}"))
