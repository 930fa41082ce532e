"""kill -9 of the store's writer process (the server's child) while batches are in flight.

The server stays up: requests waiting on the dead writer, and those arriving before it is started again,
get 503 ``store_unavailable`` (a JSON error, never a hang), readiness says why, the writer is started again,
and clients that retry their unanswered batches end with every event stored exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.faults.conftest import HEADERS, all_stored_ids, process_gone, progress_event

pytestmark = pytest.mark.slow

CLIENTS = 4
BATCH = 50
ACKS_BEFORE_KILL = 8
RECOVERY_TIMEOUT_S = 20.0


def make_batch(client: int, number: int) -> list[dict[str, Any]]:
    return [progress_event(f"wk-{client}-{number}-{n}", f"wk-run-{client}", number * BATCH + n) for n in range(BATCH)]


async def test_writer_process_killed_mid_ingestion_is_replaced_and_nothing_is_lost(control_plane_process: Any) -> None:
    server = control_plane_process().start()
    first_writer = server.writer_pid()
    acked: list[list[dict[str, Any]]] = []
    refusals: list[dict[str, Any]] = []
    outcomes: list[tuple[int, int]] = []
    positions: list[int] = []
    killed = asyncio.Event()
    recovered = asyncio.Event()

    async def client(index: int, http: httpx.AsyncClient) -> None:
        number = 0
        while not recovered.is_set():
            batch = make_batch(index, number)
            number += 1
            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            while True:  # the client contract: retry an unanswered batch until it is acknowledged
                response = await http.post("/v1/events", json=batch)
                if response.status_code == 202:
                    body = response.json()
                    outcomes.append((body["accepted"], body["duplicates"]))
                    positions.append(body["position"])
                    acked.append(batch)
                    if killed.is_set() and len(acked) >= 2 * ACKS_BEFORE_KILL:
                        recovered.set()
                    break
                assert response.status_code == 503, response.text
                refusals.append(response.json())
                assert time.monotonic() < deadline, f"no acknowledgement within {RECOVERY_TIMEOUT_S} s: {response.text}"
                await asyncio.sleep(0.05)

    async def killer() -> None:
        for _ in range(3000):  # bounded: 3000 × 10 ms
            if len(acked) >= ACKS_BEFORE_KILL:
                break
            await asyncio.sleep(0.01)
        os.kill(first_writer, signal.SIGKILL)
        killed.set()

    async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=30) as http:
        await asyncio.gather(killer(), *(client(i, http) for i in range(CLIENTS)))

    assert process_gone(first_writer)
    assert refusals, "no request was refused while the writer was down"
    assert all(body["error"] == "store_unavailable" for body in refusals), refusals[:3]
    assert server.process is not None and server.process.poll() is None, "the server itself went down"
    assert server.writer_pid() != first_writer, "the writer was not started again"
    assert "store writer process exited" in server.log_tail(200)
    # A batch whose commit the kill interrupted is all new on retry; one committed before the kill whose answer
    # was lost comes back all duplicates: never partly stored.
    assert all(outcome in ((BATCH, 0), (0, BATCH)) for outcome in outcomes), f"a batch was partly stored: {outcomes}"

    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        sent_ids = {event["id"] for batch in acked for event in batch}
        stored = all_stored_ids(http)
        duplicated = [event_id for event_id, count in collections.Counter(stored).items() if count > 1]
        assert not duplicated, f"stored more than once: {duplicated[:5]}"
        assert set(stored) == sent_ids, f"missing: {sorted(sent_ids - set(stored))[:5]}"
        for index in range(CLIENTS):
            # The restarted writer's projector takes over once the killed one's lease lapsed: read once it has.
            run = http.get(f"/v1/runs/wk-run-{index}", params={"min_position": max(positions)}).json()
            expected = sum(1 for batch in acked for event in batch if event["runid"] == f"wk-run-{index}")
            assert run["event_count"] == expected, f"run wk-run-{index} folded an event twice or lost one"
