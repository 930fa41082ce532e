"""Input that can never succeed gets a 4xx naming the problem, never a 5xx or a 503 "retry": a client that
retries a poison event forever would block every event behind it. Each case stores nothing, and the pages
and endpoints that render stored data keep working afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

SINGLE = {"content-type": "application/cloudevents+json"}


def _nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


def _status(cooldown_until: str) -> dict[str, Any]:
    return support.event("target.status", None, target="made-up", data={
        "health": "Blocked", "breaker_state": "Open", "consecutive_failures": 3, "trips": 1, "cooldown_until": cooldown_until,
        "active_runs": 0, "pending_runs": 0, "max_open_prs": 1, "max_concurrent_runs": 1})


POISON: dict[str, tuple[dict[str, Any], str]] = {
    "time in year 0 once in UTC": ({**support.event("run.created", "p-1"), "time": "0001-01-01T00:00:00+14:00"}, "time"),
    "time past year 9999 once in UTC": ({**support.event("run.created", "p-2"), "time": "9999-12-31T23:59:59-14:00"}, "time"),
    "data nested 200 levels": (support.event("run.log", "p-3", data={"level": "info", "message": "m", "x": _nested(200)}), ""),
    "NUL in runid": (support.event("run.created", "p-\u0000-4"), "runid"),
    "NUL in a data key": (support.event("run.log", "p-5", data={"level": "info", "message": "m", "k\u0000": 1}), "data"),
    "lone surrogate": (support.event("run.log", "p-6", data={"level": "info", "message": "\ud800"}), "data.message"),
    "cooldown in year 0": (_status("0001-01-01T00:00:00+14:00"), "data.cooldown_until"),
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_poison_event_is_refused_with_422_and_stores_nothing(api: RunningServer, case: str) -> None:
    event, field = POISON[case]
    body = json.dumps(event).encode()  # json.dumps escapes NUL and surrogates as \\u0000 / \\ud800, as clients do
    response = api.client.post("/v1/events", content=body, headers=SINGLE)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_event"
    assert any(problem["field"].startswith(field) for problem in response.json()["detail"]), response.json()
    assert api.client.get("/v1/events").json()["items"] == []
    for path in ("/", "/console/partials/status", "/v1/status", "/v1/targets", "/v1/runs"):
        assert api.client.get(path).status_code == 200, path


def test_a_poison_event_in_a_batch_names_its_index(api: RunningServer) -> None:
    good = support.event("run.created", "ok-1")
    bad = {**support.event("run.created", "p-7"), "time": "0001-01-01T00:00:00+14:00"}
    response = api.client.post("/v1/events", content=json.dumps([good, bad]).encode(),
                               headers={"content-type": "application/cloudevents-batch+json"})
    assert response.status_code == 422 and [p["index"] for p in response.json()["detail"]] == [1]


@pytest.mark.parametrize("path,content_type", [("/v1/events", "application/cloudevents-batch+json"),
                                               ("/v1/otlp/v1/traces", "application/json")])
def test_json_nested_past_the_decoder_is_400_not_500(api: RunningServer, path: str, content_type: str) -> None:
    response = api.client.post(path, content=b"[" * 100_000, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert "nest" in response.json()["message"]


def test_an_escaped_backslash_before_u0000_is_plain_text(api: RunningServer) -> None:
    """The quick scan for \\u0000 also matches an escaped backslash followed by "u0000": the walk decides."""
    event = support.event("run.log", "ok-2", data={"level": "info", "message": "C:\\u0000dir"})
    assert api.client.post("/v1/events", content=json.dumps(event).encode(), headers=SINGLE).status_code == 202
