"""The store's writer on its own (no HTTP): a group whose transaction fails is retried request by request,
so one request that cannot be stored does not take the others down, and each stays all or nothing."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from outrider.common import events
from outrider.control_plane import store as store_module
from tests.control_plane import cp_support as support


def valid(raw: dict[str, Any]) -> events.CloudEvent:
    event, problems = events.validate_event(raw)
    assert event is not None, problems
    return event


def test_one_poisoned_request_does_not_fail_its_group(make_settings) -> None:  # type: ignore[no-untyped-def]
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)  # no writer thread: the test drives one group by hand
    try:
        good_a = store_module._Submission([valid(support.event("run.created", "run-a"))], concurrent.futures.Future())
        # Validation bounds keep this out of the API; constructed directly, it overflows the 64-bit columns.
        poison = events.CloudEvent.model_construct(**{
            **support.event("run.llm_usage", "run-p", data={"provider": "p", "model": "m", "input_tokens": 2**70, "output_tokens": 1}),
            "time": support.BASE_TIME,
        })
        bad = store_module._Submission([valid(support.event("run.created", "run-p")), poison], concurrent.futures.Future())
        good_b = store_module._Submission([valid(support.event("run.created", "run-b"))], concurrent.futures.Future())
        the_store._commit_group([good_a, bad, good_b])
        assert good_a.future.result(timeout=0) == (1, 0)
        assert good_b.future.result(timeout=0) == (1, 0)
        with pytest.raises(store_module.StoreUnavailable):
            bad.future.result(timeout=0)
        stored = {item["event"]["runid"] for item in the_store.list_events()}
        assert stored == {"run-a", "run-b"}  # nothing of the bad request, not even its valid first event
        assert the_store.get_run("run-p") is None
        assert the_store.last_commit_error is None  # the last commit worked: the store itself is fine
    finally:
        the_store.engine.dispose()


def test_unexpected_errors_are_json_too(make_sqlite_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_sqlite_settings())

    @server.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    response = server.client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "unexpected error (RuntimeError); see the server log", "detail": None}
