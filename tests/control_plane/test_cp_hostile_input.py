"""Input that can never succeed gets a 4xx naming the problem, never a 5xx or a 503 "retry": a client that
retries a poison event forever would block every event behind it. Each case stores nothing, and the pages
and endpoints that render stored data keep working afterwards."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from outrider.common import events
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


def _cursor(position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


BAD_CURSORS = [{"seq": 1e308}, {"seq": 2**70}, {"seq": "1 OR 1=1"}, {"seq": -1}, {"seq": True}, {"seq": None}]
BAD_TIME_CURSORS = [{"time": "0001-01-01T00:00:00+14:00x", "seq": 1}, {"time": 5, "seq": 1}, {"time": "x" * 5000, "seq": 1},
                    {"time": "2026-01-01T00:00:00Z", "seq": 2**70}]


@pytest.mark.parametrize("position", BAD_CURSORS, ids=[json.dumps(p) for p in BAD_CURSORS])
def test_forged_cursors_are_422(api: RunningServer, position: object) -> None:
    for path, extra in (("/v1/events", {}), ("/v1/events", {"since": "2026-01-01T00:00:00Z"}), ("/v1/runs/r-1/logs", {})):
        response = api.client.get(path, params={"cursor": _cursor(position), **extra})
        assert response.status_code == 422 and response.json()["error"] == "invalid_cursor", (path, response.text)
    runs = api.client.get("/v1/runs", params={"cursor": _cursor({"created_at": position, "run_id": 1})})
    assert runs.status_code == 422, runs.text
    assert api.client.get("/runs", params={"cursor": _cursor({"c": position, "r": "x"})}).status_code == 200


@pytest.mark.parametrize("position", BAD_TIME_CURSORS, ids=[json.dumps(p)[:40] for p in BAD_TIME_CURSORS])
def test_forged_time_cursors_are_422(api: RunningServer, position: object) -> None:
    response = api.client.get("/v1/events", params={"cursor": _cursor(position), "since": "2026-01-01T00:00:00Z"})
    assert response.status_code == 422 and response.json()["error"] == "invalid_cursor", response.text


def test_times_at_the_ends_of_the_calendar_are_clamped_not_500(api: RunningServer) -> None:
    api.client.post("/v1/events", json=support.event("run.created", "t-1"))
    for since in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00"):
        for path in ("/v1/events", "/v1/runs"):
            response = api.client.get(path, params={"since": since})
            assert response.status_code == 200, (path, since, response.text)
    assert len(api.client.get("/v1/events", params={"since": "0001-01-01T00:00:00+14:00"}).json()["items"]) == 1


@pytest.mark.parametrize("header", ["9" * 5000, "-1", "1e5", "12a", str(2**63)])
def test_a_bad_last_event_id_is_422(api: RunningServer, header: str) -> None:
    response = api.client.get("/v1/events/stream", headers={"Last-Event-ID": header})
    assert response.status_code == 422 and response.json()["error"] == "invalid_last_event_id", response.text


@pytest.mark.parametrize("seq", ["1e23", str(10**23), "0", "-5"])
def test_the_activity_partial_refuses_positions_out_of_range(api: RunningServer, seq: str) -> None:
    response = api.client.get("/console/partials/activity", params={"seq": seq})
    assert response.status_code == 422, response.text


def test_history_stored_under_looser_rules_still_renders(api: RunningServer) -> None:
    """Events that older versions stored (a year-0 cooldown, data nested 40 deep, a free-form ``namespace``
    extension from before namespaces had a meaning) stay in the history; no page or endpoint may fail on them
    (before, one such target.status kept the dashboard at 500). Written straight into the log, as an older
    version left them (migration 0011 makes each stored event a log row): today's ingestion refuses all three."""
    import sqlalchemy as sa

    from outrider.control_plane import tables

    old = [support.event("run.log", "legacy-1", data={"level": "info", "message": "m", "x": _nested(40)}),
           {**support.event("run.failed", "legacy-1", data={"message": "x"}), "namespace": "Not A DNS Label"},
           _status("0001-01-01T00:00:00+14:00")]
    with api.app.state.store.engine.begin() as conn:
        for seq, raw in enumerate(old, start=1):
            conn.execute(sa.insert(tables.event_log).values(seq=seq, last_seq=seq, received_at=support.BASE_TIME,
                                                            body=json.dumps([{**raw, "id": f"legacy-{seq}"}])))
        conn.execute(sa.update(tables.event_log_head).where(tables.event_log_head.c.id == 1).values(seq=len(old)))
    for path in ("/", "/console/partials/status", "/v1/status", "/v1/targets", "/v1/events", "/v1/runs/legacy-1/logs"):
        assert api.client.get(path).status_code == 200, path
    assert len(api.client.get("/v1/events").json()["items"]) == 3


def test_a_batch_is_depth_checked_as_each_event_alone(api: RunningServer) -> None:
    """The ingest path checks nesting once for a whole batch: an event at the deepest accepted level passes in a
    batch as it does alone, and one level more is refused naming its index, in a batch as alone."""
    def at(levels: int, run: str) -> dict[str, Any]:
        return support.event("run.log", run, data={"level": "info", "message": "m", "x": _nested(levels)})

    deepest = max(n for n in range(1, 40) if events.validate_event(at(n, "probe"))[0] is not None)
    assert events.validate_event(at(deepest + 1, "probe"))[1], "the single-event check must refuse one level more"
    batch = {"content-type": "application/cloudevents-batch+json"}
    ok = api.client.post("/v1/events", content=json.dumps([at(1, "d-1"), at(deepest, "d-2")]).encode(), headers=batch)
    assert ok.status_code == 202 and ok.json()["accepted"] == 2, ok.text
    refused = api.client.post("/v1/events", content=json.dumps([at(1, "d-3"), at(deepest + 1, "d-4")]).encode(), headers=batch)
    assert refused.status_code == 422 and [p["index"] for p in refused.json()["detail"]] == [1], refused.text
    alone = api.client.post("/v1/events", content=json.dumps(at(deepest + 1, "d-5")).encode(), headers=SINGLE)
    assert alone.status_code == 422 and "nest deeper" in alone.text
