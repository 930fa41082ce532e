"""kill -9 of the projector's own process (a child of the store's writer process) under load, and of the writer.

The projector runs in a process of its own beside the appender. Killed, it is started again by the writer
process and the projection finishes with every run record equal to its events: nothing lost, nothing
counted twice (the checkpoint commits with the rows it covers). When the writer process dies, its projector
dies with it (the kernel's parent-death signal), so the replacement writer's projector, which reuses the lease
name, never has an older one of the same name beside it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.conftest import HEADERS, process_gone, progress_event

pytestmark = pytest.mark.slow

RUNS = 4
BATCHES = 30
BATCH = 100


def children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a replacement projector is started by the writer's watcher thread)."""
    return [int(each) for task in Path(f"/proc/{pid}/task").iterdir() for each in (task / "children").read_text().split()]


def projector_pid(writer: int, timeout_s: float = 20.0) -> int:
    """The writer process's only child, once it is there (it starts after the writer)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = children(writer)
        if found:
            assert len(found) == 1, f"expected one projector process, found {found}"
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the writer process started no projector process")


def caught_up(http: httpx.Client, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = http.get("/v1/projection").json()
        if status["position"] >= status["head"] and status["holder"]:
            return dict(status)
        assert time.monotonic() < deadline, f"the projection did not catch up: {status}"
        time.sleep(0.05)


def test_projector_process_killed_under_load_is_restarted_and_loses_and_doubles_nothing(control_plane_process: Any) -> None:
    server = control_plane_process().start()
    writer = server.writer_pid()
    first = projector_pid(writer)
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        for number in range(BATCHES):
            batch = [progress_event(f"pp-{number}-{run}-{n}", f"pp-run-{run}", number * BATCH + n)
                     for run in range(RUNS) for n in range(BATCH // RUNS)]
            assert http.post("/v1/events", json=batch).status_code == 202
            if number == BATCHES // 3:
                os.kill(first, signal.SIGKILL)  # mid-load: the projector is folding what came before
        assert process_gone(first)
        second = projector_pid(writer)
        assert second != first, "the projector process was not started again"
        status = caught_up(http)
        assert status["position"] == BATCHES * BATCH
        for run in range(RUNS):
            record = http.get(f"/v1/runs/pp-run-{run}").json()
            assert record["event_count"] == BATCHES * BATCH // RUNS, f"pp-run-{run} lost or doubled an event: {record['event_count']}"
        assert server.writer_pid() == writer, "killing the projector must not take the writer with it"


def test_the_projector_process_dies_with_its_writer(control_plane_process: Any) -> None:
    server = control_plane_process().start()
    writer = server.writer_pid()
    projector = projector_pid(writer)
    os.kill(writer, signal.SIGKILL)
    assert process_gone(projector, timeout_s=5), "the projector outlived its writer process"
    deadline = time.monotonic() + 20
    while True:  # the server starts another writer, which starts another projector
        try:
            replacement = server.writer_pid()
        except (AssertionError, FileNotFoundError):
            replacement = writer
        if replacement != writer:
            break
        assert time.monotonic() < deadline, "no new writer process"
        time.sleep(0.05)
    assert projector_pid(replacement) != projector
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        deadline = time.monotonic() + 20
        while http.post("/v1/events", json=[progress_event("after-1", "pp-after", 1)]).status_code != 202:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        caught_up(http)
        assert http.get("/v1/runs/pp-after").json()["event_count"] == 1
