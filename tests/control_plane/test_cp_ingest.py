"""POST /v1/events against a real uvicorn and a real store (SQLite file and PostgreSQL): 202, idempotency,
all-or-nothing batches, and every refusal (auth, media type, malformed JSON, invalid events, size) storing nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from outrider.control_plane import app as app_module
from tests.conftest import counts
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

BATCH = support.BATCH
SINGLE = support.SINGLE


def stored_count(api: RunningServer) -> int:
    response = api.client.get("/v1/events", params={"limit": 1000})
    assert response.status_code == 200
    return len(response.json()["items"])


def rejected(api: RunningServer, reason: str) -> float:
    value = api.registry.get_sample_value("outrider_events_rejected_total", {"reason": reason})
    return value or 0.0


def test_single_event_each_content_type(api: RunningServer) -> None:
    for content_type in ("application/cloudevents+json", "application/json", "application/json; charset=utf-8"):
        response = api.client.post("/v1/events", content=json.dumps(support.event("run.created")), headers={"Content-Type": content_type})
        assert response.status_code == 202, response.text
        assert counts(response) == {"accepted": 1, "duplicates": 0}
    response = api.client.post("/v1/events", json=[support.event("run.created"), support.event("run.started")])
    assert response.status_code == 202 and counts(response) == {"accepted": 2, "duplicates": 0}
    assert stored_count(api) == 5


def test_batch_then_idempotent_retry(api: RunningServer) -> None:
    batch = support.lifecycle("run-a")
    first = api.client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
    assert first.status_code == 202 and counts(first) == {"accepted": len(batch), "duplicates": 0}
    record_before = api.client.get("/v1/runs/run-a").json()
    retry = api.client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
    assert retry.status_code == 202 and counts(retry) == {"accepted": 0, "duplicates": len(batch)}
    single = api.client.post("/v1/events", json=batch[0])
    assert counts(single) == {"accepted": 0, "duplicates": 1}
    assert stored_count(api) == len(batch)
    assert api.client.get("/v1/runs/run-a").json() == record_before
    assert api.registry.get_sample_value("outrider_events_received_total", {"type": "run.created"}) == 1


def test_duplicates_inside_one_request_count_as_duplicates(api: RunningServer) -> None:
    one = support.event("run.created", "run-d")
    response = api.client.post("/v1/events", content=json.dumps([one, one, one]), headers=BATCH)
    assert counts(response) == {"accepted": 1, "duplicates": 2}
    assert api.client.get("/v1/runs/run-d").json()["event_count"] == 1


def test_same_id_from_another_source_is_another_event(api: RunningServer) -> None:
    a = support.event("run.created", "run-s", id="same", source="/a")
    b = support.event("run.admitted", "run-s", id="same", source="/b")
    assert counts(api.client.post("/v1/events", json=[a, b])) == {"accepted": 2, "duplicates": 0}


def test_missing_and_wrong_token_store_nothing(api: RunningServer) -> None:
    body = json.dumps([support.event("run.created")])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + support.TOKEN}, {"Authorization": "Bearer"}):
        response = api.anonymous.post("/v1/events", content=body, headers=BATCH | headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
    for path in ("/v1/events", "/v1/runs", "/v1/runs/x", "/v1/runs/summary", "/v1/analytics/errors", "/v1/events/stream"):
        response = api.anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"
    assert stored_count(api) == 0
    assert rejected(api, "unauthorized") == 4
    assert api.anonymous.get("/v1/health").status_code == 200
    assert api.anonymous.get("/readyz").json()["ready"] is True


def test_no_token_configured_fails_closed(make_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_settings(api_tokens=""))
    response = server.client.post("/v1/events", json=support.event("run.created"))
    assert response.status_code == 401


def test_malformed_json_is_400_and_stores_nothing(api: RunningServer) -> None:
    for body, headers in (
        (b"{not json", SINGLE),
        (b'{"a": NaN}', SINGLE),
        (b"\xff\xfe", SINGLE),
        (json.dumps(support.event("run.created")).encode(), BATCH),  # an object where an array is required
        (json.dumps([support.event("run.created")]).encode(), SINGLE),  # an array where one object is required
    ):
        response = api.client.post("/v1/events", content=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"] == "malformed_json"
    assert stored_count(api) == 0
    assert rejected(api, "malformed_json") == 5


def test_unsupported_media_type_is_415(api: RunningServer) -> None:
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = api.client.post("/v1/events", content=json.dumps(support.event("run.created")), headers=headers)
        assert response.status_code == 415
        assert response.json()["error"] == "unsupported_media_type"
    assert stored_count(api) == 0


def test_invalid_event_rejects_the_whole_batch(api: RunningServer) -> None:
    batch = support.lifecycle("run-bad")
    batch[2] = {**batch[2], "specversion": "0.3"}
    batch[4] = {**batch[4], "data": {**batch[4]["data"], "input_tokens": -1}}
    batch[5] = {**batch[5], "time": "2026-01-01T00:00:00"}  # no offset
    batch[6] = {**batch[6]}
    del batch[6]["runid"]
    response = api.client.post("/v1/events", content=json.dumps(batch), headers=BATCH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_event"
    problems = {(p["index"], p["field"]) for p in body["detail"]}
    assert {(2, "specversion"), (4, "data.input_tokens"), (5, "time"), (6, "runid")} <= problems
    assert stored_count(api) == 0
    assert api.client.get("/v1/runs/run-bad").status_code == 404
    assert rejected(api, "invalid_event") == len(batch)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("id"), "id"),
        (lambda e: e.update(time="yesterday"), "time"),
        (lambda e: e.update(time="2026-01-01T00:00:00"), "time"),  # no offset: not RFC 3339
        (lambda e: e.update(type="run.stage.started", data={}), "data.stage"),
        (lambda e: e.update(data=[1, 2]), "data"),
        (lambda e: e.update(source=""), "source"),
    ],
)
def test_invalid_cloudevents_name_the_field(api: RunningServer, mutate, field) -> None:  # type: ignore[no-untyped-def]
    body = support.event("run.created")
    mutate(body)
    response = api.client.post("/v1/events", json=body)
    assert response.status_code == 422
    assert field in {p["field"] for p in response.json()["detail"]}
    assert stored_count(api) == 0


def test_non_object_event_in_batch(api: RunningServer) -> None:
    response = api.client.post("/v1/events", content=json.dumps([support.event("run.created"), 42]), headers=BATCH)
    assert response.status_code == 422
    assert response.json()["detail"] == [{"index": 1, "field": "", "message": "an event must be a JSON object"}]
    assert stored_count(api) == 0


def test_unknown_type_is_stored_but_changes_no_run(api: RunningServer) -> None:
    created = support.event("run.created", "run-u")
    assert api.client.post("/v1/events", json=created).status_code == 202
    before = api.client.get("/v1/runs/run-u").json()
    strange = support.event("run.teleported", "run-u", at=5, data={"anything": [1, 2]})
    assert counts(api.client.post("/v1/events", json=strange)) == {"accepted": 1, "duplicates": 0}
    assert api.client.get("/v1/runs/run-u").json() == before
    assert stored_count(api) == 2
    assert api.registry.get_sample_value("outrider_events_received_total", {"type": "other"}) == 1
    other = support.event("vendor.thing", None, target=None)
    assert api.client.post("/v1/events", json=other).status_code == 202


def test_oversized_body_is_413_and_stores_nothing(make_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_settings(max_body_bytes=4096, max_batch_events=5))
    big = support.event("run.log", data={"level": "info", "message": "x" * 5000})
    response = server.client.post("/v1/events", content=json.dumps(big), headers=SINGLE)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit must hold while streaming
        payload = json.dumps([big]).encode()
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    streamed = server.client.post("/v1/events", content=chunks(), headers=BATCH)
    assert streamed.status_code == 413
    too_many = [support.event("run.created", f"run-{i}") for i in range(6)]
    response = server.client.post("/v1/events", content=json.dumps(too_many), headers=BATCH)
    assert response.status_code == 413
    assert response.json()["error"] == "batch_too_large"
    assert stored_count(server) == 0
    assert server.registry.get_sample_value("outrider_events_rejected_total", {"reason": "payload_too_large"}) == 2
    assert server.registry.get_sample_value("outrider_events_rejected_total", {"reason": "batch_too_large"}) == 6
    fits = server.client.post("/v1/events", content=json.dumps(too_many[:5]), headers=BATCH)
    assert counts(fits) == {"accepted": 5, "duplicates": 0}


def test_failed_commit_answers_503_writes_nothing_and_readiness_follows(api: RunningServer) -> None:
    assert api.client.post("/v1/events", json=support.event("run.created", "run-ok")).status_code == 202
    store = api.app.state.store
    import sqlalchemy as sa

    def rename(pairs: list[tuple[str, str]]) -> None:
        with store.engine.begin() as conn:
            for old, new in pairs:
                conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))

    # Break every write under the running server: the tables the writer needs disappear.
    rename([("event_log", "log_gone"), ("store_probe", "probe_gone")])
    lost = support.event("run.created", "run-lost")
    response = api.client.post("/v1/events", json=lost)
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    ready = api.anonymous.get("/readyz")  # SELECT 1 still works; readiness must not be fooled by it
    assert ready.status_code == 503 and "commits are failing" in ready.json()["detail"]
    rename([("log_gone", "event_log"), ("probe_gone", "store_probe")])
    items = api.client.get("/v1/events").json()["items"]
    assert [item["event"]["runid"] for item in items] == ["run-ok"]  # the events insert was rolled back too
    assert api.anonymous.get("/readyz").status_code == 200  # recovers on its own, before any new event
    assert store.last_commit_error is None
    assert api.client.post("/v1/events", json=support.event("run.created", "run-later")).status_code == 202
    # Nothing of the failed commit stayed, its (source, id) key included: the same event sent again is new.
    again = api.client.post("/v1/events", json=lost)
    assert again.status_code == 202 and again.json()["accepted"] == 1, again.text


def test_numbers_the_store_cannot_hold_are_refused(api: RunningServer) -> None:
    usage = support.event("run.llm_usage", data={"provider": "p", "model": "m", "input_tokens": 10**30, "output_tokens": 1})
    response = api.client.post("/v1/events", json=usage)
    assert response.status_code == 422
    assert "data.input_tokens" in {p["field"] for p in response.json()["detail"]}
    overflow = json.dumps(support.event("run.log", data={"level": "info", "message": "x", "ratio": 1}))
    response = api.client.post("/v1/events", content=overflow.replace('"ratio": 1', '"ratio": 1e999'), headers=SINGLE)
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"
    assert stored_count(api) == 0


async def test_ingest_behind_a_root_path_and_other_methods_still_routed(make_settings) -> None:  # type: ignore[no-untyped-def]
    """POST /v1/events skips FastAPI's routing (app.ControlPlane); under a proxy prefix it is still found, and the
    path's other methods still get FastAPI's answers in the error shape."""
    application = app_module.create_app(make_settings())
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, root_path="/outrider")
        async with httpx.AsyncClient(transport=transport, base_url="http://cp", headers={"Authorization": f"Bearer {support.TOKEN}"}) as client:
            posted = await client.post("/outrider/v1/events", json=support.event("run.created"))
            assert posted.status_code == 202 and counts(posted) == {"accepted": 1, "duplicates": 0}
            listed = await client.get("/outrider/v1/events")
            assert listed.status_code == 200 and len(listed.json()["items"]) == 1
            wrong = await client.put("/outrider/v1/events", json=support.event("run.created"))
            assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


async def test_an_unexpected_failure_is_a_json_500(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A bug behind the ingestion fast path answers like every other route: 500 in the error shape, logged."""
    application = app_module.create_app(make_settings())
    application.state.store = None  # no store at all: the handler fails with AttributeError once the request is valid
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp", headers={"Authorization": f"Bearer {support.TOKEN}"}) as client:
        response = await client.post("/v1/events", json=support.event("run.created"))
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error" and "AttributeError" in response.json()["message"]
