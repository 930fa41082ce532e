"""``GET /v1/events`` with ``since``/``until`` pages in event-time order, (time, seq), on SQLite and PostgreSQL.

The events are posted out of time order, in several requests, with many sharing one timestamp (ties are
broken by seq) and some at the window's edges; every page size must list exactly the events of the window,
each once, in (time, seq) order — and a page taken after more events arrived continues without repeats.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer
from tests.control_plane.test_cp_read_api import all_pages, post

SINCE, UNTIL = "2026-01-01T12:00:10Z", "2026-01-01T12:00:50Z"


def log(run: str, at: float, message: str) -> dict[str, Any]:
    return support.event("run.log", run, at=at, data={"level": "info", "message": message})


def history(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    # 0..59 s, three events per whole second and a cluster of 12 at exactly +30 s (ties); shuffled.
    found = [log(f"run-{i % 4}", i // 3 + rng.choice((0, 0.5)), str(i)) for i in range(180)]
    found += [support.event("run.progress", f"run-{i % 4}", at=30, data={"stage": "code", "iteration": i}) for i in range(12)]
    rng.shuffle(found)
    return found


def key(item: dict[str, Any]) -> tuple[datetime, int]:
    return datetime.fromisoformat(item["event"]["time"]), item["seq"]


def test_time_windows_page_in_time_order_without_gaps_or_repeats(api: RunningServer) -> None:
    events = history(1)
    for start in range(0, len(events), 40):  # several requests: seq order differs from time order
        post(api, events[start : start + 40])
    everything = all_pages(api, "/v1/events", limit=1000)
    low, high = datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL)
    expected = sorted((item for item in everything if low <= key(item)[0] < high), key=key)
    assert 100 < len(expected) < len(everything)
    for limit in (1, 7, 12, 100, 1000):
        listed = all_pages(api, "/v1/events", since=SINCE, until=UNTIL, limit=limit)
        assert [item["seq"] for item in listed] == [item["seq"] for item in expected], limit
    since_only = all_pages(api, "/v1/events", since=SINCE, limit=13)
    assert [key(item) for item in since_only] == sorted(key(item) for item in everything if key(item)[0] >= low)
    until_only = all_pages(api, "/v1/events", until=SINCE, limit=13)
    assert [key(item) for item in until_only] == sorted(key(item) for item in everything if key(item)[0] < low)
    ties = all_pages(api, "/v1/events", since="2026-01-01T12:00:30Z", until="2026-01-01T12:00:30.000001Z", limit=5)
    assert len(ties) >= 12 and [item["seq"] for item in ties] == sorted(item["seq"] for item in ties)
    filtered = all_pages(api, "/v1/events", since=SINCE, until=UNTIL, run_id="run-1", type="run.log", limit=4)
    assert [item["seq"] for item in filtered] == [
        item["seq"] for item in expected if item["event"]["runid"] == "run-1" and item["event"]["type"] == "run.log"
    ]


def test_a_cursor_continues_after_new_events_arrive(api: RunningServer) -> None:
    post(api, [log("run-c", i, str(i)) for i in range(20, 40)])
    first = api.client.get("/v1/events", params={"since": SINCE, "limit": 5}).json()
    assert [item["event"]["data"]["message"] for item in first["items"]] == ["20", "21", "22", "23", "24"]
    # Late arrivals: one before the cursor's position (not listed by the following pages), one after it.
    post(api, [log("run-c", 15, "early"),
               log("run-c", 26.5, "between")])
    rest: list[dict[str, Any]] = []
    cursor = first["next_cursor"]
    while cursor:
        page = api.client.get("/v1/events", params={"since": SINCE, "limit": 5, "cursor": cursor}).json()
        rest += page["items"]
        cursor = page["next_cursor"]
    messages = [item["event"]["data"]["message"] for item in rest]
    assert messages == ["25", "26", "between", *[str(i) for i in range(27, 40)]]


def test_cursors_of_the_two_orders_do_not_mix(api: RunningServer) -> None:
    post(api, [log("run-x", 20 + i, "x") for i in range(3)])
    by_seq = api.client.get("/v1/events", params={"limit": 1}).json()["next_cursor"]
    by_time = api.client.get("/v1/events", params={"since": SINCE, "limit": 1}).json()["next_cursor"]
    for params in ({"since": SINCE, "cursor": by_seq}, {"cursor": by_time}):
        response = api.client.get("/v1/events", params=params)
        assert response.status_code == 422 and response.json()["error"] == "invalid_cursor", params
