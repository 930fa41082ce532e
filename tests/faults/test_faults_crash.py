"""kill -9 of the control plane during batched ingestion loses and duplicates nothing.

Four clients post batches of 50 events; once 12 batches are acknowledged the process is SIGKILLed
while the others are in flight. A client that got no answer keeps its batch and retries it after the
restart (on the same SQLite file), as the client contract says. Then:

- every event stored exactly once, and every sent event stored (nothing acknowledged was lost);
- a batch is all or nothing: a retried batch comes back either entirely new (the kill hit before its
  commit) or entirely ``duplicates`` (committed, but the answer was lost) — never partly;
- a deliberate re-send of acknowledged batches is answered entirely as duplicates;
- every run record folded each of its events once (``event_count``).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from outrider.control_plane.store.engine import projections_file
from tests.conftest import counts
from tests.faults.conftest import HEADERS, all_stored_ids, process_gone, progress_event

pytestmark = pytest.mark.slow

CLIENTS = 4
BATCH = 50
ACKS_BEFORE_KILL = 12
RUNS_PER_CLIENT = 3


def make_batch(client: int, number: int) -> list[dict[str, Any]]:
    run_id = f"crash-run-{client}-{number % RUNS_PER_CLIENT}"
    return [progress_event(f"crash-{client}-{number}-{n}", run_id, number * BATCH + n) for n in range(BATCH)]


async def test_kill9_during_batched_ingestion_loses_and_duplicates_nothing(
    control_plane_process: Any, tmp_path: Path
) -> None:
    server = control_plane_process().start()
    acked: list[list[dict[str, Any]]] = []
    unacked: list[list[dict[str, Any]]] = []
    accepted_total = 0
    killed = asyncio.Event()

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal accepted_total
        number = 0
        while not killed.is_set():
            batch = make_batch(index, number)
            number += 1
            try:
                response = await http.post("/v1/events", json=batch)
            except httpx.HTTPError:
                unacked.append(batch)  # no answer: the client cannot know; it must retry
                return
            if response.status_code == 202:
                body = response.json()
                assert body["accepted"] + body["duplicates"] == BATCH
                accepted_total += body["accepted"]
                acked.append(batch)
            else:
                unacked.append(batch)

    async def killer() -> None:
        for _ in range(3000):  # bounded: 3000 × 10 ms
            if len(acked) >= ACKS_BEFORE_KILL:
                break
            await asyncio.sleep(0.01)
        writer = server.writer_pid()
        await asyncio.to_thread(server.kill9)
        killed.set()
        # The orphaned writer process reads end-of-file and exits: it cannot keep writing behind a restart.
        assert await asyncio.to_thread(process_gone, writer), f"writer process {writer} outlived its server"

    async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=30) as http:
        await asyncio.gather(killer(), *(client(i, http) for i in range(CLIENTS)))

    assert len(acked) >= ACKS_BEFORE_KILL, f"only {len(acked)} batches acknowledged before the kill"
    server.start()  # same file, same port: the crash recovery path of SQLite's WAL

    outcomes: list[tuple[int, int]] = []
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        for batch in unacked:
            for _attempt in range(50):  # bounded retries with a short pause
                response = http.post("/v1/events", json=batch)
                if response.status_code == 202:
                    outcomes.append((response.json()["accepted"], response.json()["duplicates"]))
                    break
                assert response.status_code == 503, response.text
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("a retried batch was never acknowledged")

        # Re-sending acknowledged batches (a client that lost the answer) stores nothing new.
        for batch in acked[:3]:
            response = http.post("/v1/events", json=batch)
            assert response.status_code == 202, response.text
            assert counts(response) == {"accepted": 0, "duplicates": BATCH}

        sent = [event for batch in acked + unacked for event in batch]
        sent_ids = {event["id"] for event in sent}
        stored = all_stored_ids(http)
        duplicated = [event_id for event_id, count in collections.Counter(stored).items() if count > 1]
        assert not duplicated, f"stored more than once: {duplicated[:5]}"
        assert set(stored) == sent_ids, f"missing: {sorted(sent_ids - set(stored))[:5]}"
        print("retry outcomes", outcomes)
        assert all(outcome in ((BATCH, 0), (0, BATCH)) for outcome in outcomes), (
            f"a batch was partly stored: {outcomes}"
        )
        assert accepted_total == BATCH * len(acked), "a batch acknowledged before the kill was not entirely new"

        per_run = collections.Counter(event["runid"] for event in sent)
        head = http.get("/v1/projection").json()["head"]  # run records are projections: read them once they cover the log
        for run_id, count in per_run.items():
            response = http.get(f"/v1/runs/{run_id}", params={"min_position": head})
            assert response.status_code == 200, response.text
            assert response.json()["event_count"] == count, f"run {run_id} folded a retried event twice"

    server.stop()
    for path in (server.db_path, projections_file(server.db_path)):  # the log's file and the projections'
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path
