"""The store's writer as a process (the default) or as a thread: the same answers, records and counters;
the process is the server's only child, and a server stop leaves none behind.

The faults of the process itself (``kill -9`` of the writer or of the server) are in ``tests/faults``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from outrider.common import events
from outrider.control_plane import store
from tests.conftest import counts
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def _metric(server: RunningServer, line_start: str) -> str | None:
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return line.rsplit(" ", 1)[1]
    return None


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_both_writer_modes_store_and_answer_alike(make_sqlite_settings: Any, start_server: Any, mode: str) -> None:
    server: RunningServer = start_server(make_sqlite_settings(store_writer=mode))
    run = support.lifecycle("run-m")
    headers = support.BATCH
    first = server.client.post("/v1/events", content=json.dumps(run[:2]), headers=headers)
    assert first.status_code == 202 and counts(first) == {"accepted": 2, "duplicates": 0}
    again = server.client.post("/v1/events", content=json.dumps(run), headers=headers)  # the first two again
    assert again.status_code == 202 and counts(again) == {"accepted": len(run) - 2, "duplicates": 2}
    invalid = server.client.post("/v1/events", content=json.dumps([{"specversion": "1.0"}]), headers=headers)
    assert invalid.status_code == 422

    record = server.client.get("/v1/runs/run-m").json()
    assert record["status"] == "succeeded" and record["event_count"] == len(run)
    assert [item["event"]["id"] for item in server.client.get("/v1/events", params={"run_id": "run-m"}).json()["items"]] == [
        event["id"] for event in run
    ]
    assert _metric(server, 'outrider_runs_total{namespace="default",status="succeeded",target="acme/web"}') == "1.0"
    assert _metric(server, 'outrider_events_rejected_total{reason="invalid_event"}') == "1.0"
    assert server.client.get("/readyz").status_code == 200

    store = server.app.state.store
    assert (store._remote is not None) == (mode == "process")
    assert (store._writer is not None) == (mode == "thread")


def test_writer_process_is_stopped_with_the_server(make_sqlite_settings: Any, start_server: Any) -> None:
    server: RunningServer = start_server(make_sqlite_settings())
    assert server.client.post("/v1/events", json=support.event("run.created", "run-s")).status_code == 202
    remote = server.app.state.store._remote
    assert remote is not None and remote.alive
    process = remote._process
    server.stop()
    assert process.poll() is not None, "the writer process outlived the server"
    assert not remote.alive


def test_events_the_server_cannot_serialise_fail_that_request_alone(make_sqlite_settings: Any) -> None:
    """For a writer process the server's event loop serialises each request's events before handing them over:
    should that fail, that request is answered with the store's 503, and the others of the loop are stored."""
    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    the_store.open()
    try:
        kept = [events.CloudEvent.model_validate(support.event("run.created", "run-w"))]
        unserialisable = events.CloudEvent.model_validate(support.event("custom.thing", "run-v", data={"x": 1}))
        unserialisable.data = {"x": object()}  # no validated event holds one; this stands for a serialiser bug

        async def both() -> list[Any]:
            broken = the_store.submit_async([unserialisable])
            stored = the_store.submit_async(kept)
            return list(await asyncio.gather(broken, stored, return_exceptions=True))

        broken, stored = asyncio.run(both())
        assert isinstance(broken, store.StoreUnavailable) and "could not encode the events" in str(broken)
        assert stored[:2] == (1, 0)
        assert the_store.writer_alive
    finally:
        the_store.close()


def test_the_servers_loop_serves_the_writers_socket_and_a_backlog_beyond_its_buffer_arrives_whole(
    make_sqlite_settings: Any,
) -> None:
    """Opened with the server's loop, the store writes the writer's socket from that loop without ever blocking it:
    what the kernel does not take at once waits in the loop and goes out as the child reads. Requests handed over
    all at once, several times the socket's buffer, must each be stored and answered; and the store refuses to be
    closed from that loop (it would wait for answers only that loop can read) with a reason."""
    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    pad = "x" * 600
    batches = [
        [events.CloudEvent.model_validate(support.event("custom.thing", f"run-b{k}", data={"pad": pad, "n": n})) for n in range(100)]
        for k in range(40)
    ]

    async def main() -> list[Any]:
        the_store.open(asyncio.get_running_loop())
        try:
            remote = the_store._remote
            assert remote is not None and remote._socket is not None
            buffer = remote._socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert sum(len(store.encode(batch).body) for batch in batches) > 8 * buffer  # or this proves nothing
            answers = await asyncio.wait_for(asyncio.gather(*(the_store.submit_async(batch) for batch in batches)), 60)
            with pytest.raises(RuntimeError, match="another thread than its I/O loop"):
                the_store.close()
            return list(answers)
        finally:
            await asyncio.to_thread(the_store.close)

    answers = asyncio.run(main())
    assert [answer[:2] for answer in answers] == [(100, 0)] * len(batches)
    assert max(answer[2] for answer in answers) == 100 * len(batches)  # the log holds every event, once
