"""The store's writer and projector on their own (no HTTP): a group whose transaction fails is retried request
by request, so one request that cannot be stored does not take the others down, and each stays all or nothing;
the run rows the projector keeps through its in-memory run cache agree with a full recount of the stored
events, a failed projection leaves nothing of itself in that cache, and an event the projection cannot write
is skipped (logged, counted) instead of stopping it."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import pytest
import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import projection, tables
from outrider.control_plane import store as store_module
from outrider.control_plane.store.projector import Projector
from tests.control_plane import cp_support as support


def valid(raw: dict[str, Any]) -> events.CloudEvent:
    event, problems = events.validate_event(raw)
    assert event is not None, problems
    return event


def test_one_poisoned_request_does_not_fail_its_group(make_settings) -> None:  # type: ignore[no-untyped-def]
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)  # no writer thread: the test drives one group by hand
    try:
        good_a = store_module.Submission([valid(support.event("run.created", "run-a"))], concurrent.futures.Future())
        # Validation keeps this out of the API (characters no database stores); constructed directly, its row
        # cannot be inserted: the driver refuses to encode a lone surrogate.
        poison = events.CloudEvent.model_construct(**{**support.event("run.created", "run-p"), "time": support.BASE_TIME,
                                                      "id": "\ud800 lone surrogate"})
        bad = store_module.Submission([valid(support.event("run.created", "run-p")), poison], concurrent.futures.Future())
        good_b = store_module.Submission([valid(support.event("run.created", "run-b"))], concurrent.futures.Future())
        the_store._commit_group([good_a, bad, good_b])
        assert good_a.future.result(timeout=0)[:2] == (1, 0)
        assert good_b.future.result(timeout=0)[:2] == (1, 0)
        with pytest.raises(store_module.StoreUnavailable):
            bad.future.result(timeout=0)
        projector = Projector(the_store.engine)
        projector.run_until_caught_up()  # the log's reads go through the projector's index
        projector.stop()
        stored = {item["event"]["runid"] for item in the_store.list_events()}
        assert stored == {"run-a", "run-b"}  # nothing of the bad request, not even its valid first event
        assert the_store.last_commit_error is None  # the last commit worked: the store itself is fine
    finally:
        the_store.engine.dispose()


def test_an_event_the_projection_cannot_write_is_skipped_not_blocking(make_settings) -> None:  # type: ignore[no-untyped-def]
    """Validation bounds keep such numbers out of the API; appended directly, the event is in the log but its
    figures overflow the 64-bit rollup columns. The projector narrows the failing batch to that one event,
    skips it (logged and counted) and projects everything around it."""
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)
    try:
        poison = events.CloudEvent.model_construct(**{
            **support.event("run.llm_usage", "run-p", data={"provider": "p", "model": "m", "input_tokens": 2**70, "output_tokens": 1}),
            "time": support.BASE_TIME,
        })
        before = valid(support.event("run.created", "run-p"))
        after = valid(support.event("run.created", "run-q"))
        for batch in ([before], [poison], [after]):
            item = store_module.Submission(batch, concurrent.futures.Future())
            the_store._commit_group([item])
            assert item.future.result(timeout=0)[:2] == (1, 0)
        projector = Projector(the_store.engine)
        projector.run_until_caught_up()
        assert the_store.projected_position() == 3
        assert projector.folder.skipped == 1
        assert the_store.get_run("run-p")["event_count"] == 1 and the_store.get_run("run-q") is not None  # type: ignore[index]
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


def commit(the_store: store_module.Store, *requests: list[dict[str, Any]]) -> list[Any]:
    """One group of requests through the writer's commit, by hand; each request's result or exception."""
    items = [store_module.Submission([valid(raw) for raw in request], concurrent.futures.Future()) for request in requests]
    the_store._commit_group(items)
    return [item.future.exception(timeout=0) or item.future.result(timeout=0) for item in items]


def recount(the_store: store_module.Store, run_id: str) -> tuple[projection.RunState, int]:
    """The run's state folded from scratch from its stored events, and the seq of its last event."""
    stored = the_store.list_events(run_id=run_id, limit=1000)
    state = projection.empty_state()
    for item in stored:
        projection.merge_into(state, valid(item["event"]))
    return state, max(item["seq"] for item in stored)


def test_run_rows_agree_with_a_full_recount(make_settings) -> None:  # type: ignore[no-untyped-def]
    config = make_settings()
    the_store = store_module.Store(config)
    store_module.migrate(the_store.engine)  # no writer threads: the test drives the groups by hand
    runs = {f"rc-{n}": support.lifecycle(f"rc-{n}", target=f"org/t{n % 2}", fail=n == 1, start=n) for n in range(4)}
    try:
        length = max(len(items) for items in runs.values())
        for k in range(length):  # group k: the k-th event of every run, one request per run
            results = commit(the_store, *[[items[k]] for items in runs.values() if k < len(items)])
            assert all(result[:2] == (1, 0) for result in results)
            if k == length // 2:  # half by one projector, the rest by a restarted one: its cache starts empty
                first = Projector(the_store.engine, batch_events=3)
                first.run_until_caught_up()
                first._release()
        Projector(the_store.engine, batch_events=5).run_until_caught_up()
        with the_store.engine.connect() as conn:
            rows = {row.run_id: row._asdict() for row in conn.execute(sa.select(tables.runs))}
        assert set(rows) == set(runs)
        for run_id, row in rows.items():
            state, last_seq = recount(the_store, run_id)
            assert json.loads(row.pop("state")) == state
            assert row.pop("updated_seq") == last_seq
            stored = {name: store_module.utc(value) if name.endswith("_at") else value for name, value in row.items()}
            assert stored == projection.columns(run_id, state)
            assert the_store.get_run(run_id) == projection.record(run_id, state)
    finally:
        the_store.engine.dispose()


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "one-after-the-other"])
def test_a_failed_projection_leaves_nothing_in_the_run_cache(make_settings, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)
    projector = Projector(the_store.engine, pipeline=pipeline)

    def rename(old: str, new: str) -> None:
        with the_store.engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))

    try:
        assert commit(the_store, [support.event("run.created", "rf", at=0)])[0][:2] == (1, 0)
        projector.run_until_caught_up()  # the run is cached now
        rename("agg_event_types", "agg_gone")  # the runs upsert works, the aggregates after it fail
        commit(the_store, [support.event("run.admitted", "rf", at=1)])
        with pytest.raises(the_store.engine.dialect.dbapi.Error):  # a database fault, not the event's: no skipping
            projector.run_until_caught_up()  # pipelined, the write fails in its thread and the next step raises it
        assert the_store.projected_position() == 1  # the checkpoint did not move with the failed batch
        rename("agg_gone", "agg_event_types")
        commit(the_store, [support.event("run.started", "rf", at=2)])
        projector.project_batch()
        record = the_store.get_run("rf")
        assert record is not None
        assert record["event_count"] == 3 and record["status"] == "running"  # run.admitted projected once, after all
        state, _ = recount(the_store, "rf")
        assert record == projection.record("rf", state)
    finally:
        the_store.engine.dispose()


def test_the_appender_and_the_projector_take_turns_at_the_sqlite_write_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two write turns on one database file exclude each other (an flock the kernel queues, not SQLite's
    sleeping busy handler); in-memory databases have no file to share and need none."""
    import threading

    from outrider.control_plane.store.engine import WriteTurn, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    appender, projector = WriteTurn(engine), WriteTurn(engine)
    order: list[str] = []
    entered = threading.Event()

    def other() -> None:
        entered.set()
        with projector.held():
            order.append("projector")

    try:
        with appender.held():
            thread = threading.Thread(target=other)
            thread.start()
            entered.wait(5)
            thread.join(0.3)  # it must still be waiting for the turn
            order.append("appender")
        thread.join(5)
        assert order == ["appender", "projector"]
        memory = WriteTurn(make_engine("sqlite://"))
        with memory.held(), memory.held():  # nothing to take: nesting cannot block
            pass
        # A turn file that cannot be opened costs speed, never a write: the turn is skipped (SQLite still locks).
        (tmp_path / "blocked.db-writeturn").mkdir()
        blocked = WriteTurn(make_engine(f"sqlite:///{tmp_path / 'blocked.db'}"))
        with blocked.held():
            order.append("blocked")
        assert order[-1] == "blocked"
    finally:
        appender.close()
        projector.close()
        engine.dispose()


def test_asking_whether_the_appender_is_active_does_not_wait_for_a_held_turn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The projector's fold asks whether the appender is active (to defer to a burst) while its write thread holds
    the turn for a whole transaction: the question must not wait for that transaction. It did, and the fold and
    the write ran one after the other (docs/performance.md, fourteenth session)."""
    import threading

    from outrider.control_plane.store.engine import WriteTurn, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    turn = WriteTurn(engine)
    answered = threading.Event()
    try:
        with turn.held():
            thread = threading.Thread(target=lambda: (turn.appender_busy_for(), answered.set()))
            thread.start()
            assert answered.wait(10), "appender_busy_for() waited for the turn held by another thread"
        thread.join(5)
        turn.note_append()
        assert turn.appender_busy_for() is not None
    finally:
        turn.close()
        engine.dispose()


def test_a_log_body_that_is_not_an_event_object_is_skipped_and_the_rest_projected(make_settings) -> None:  # type: ignore[no-untyped-def]
    """The projector folds the log's bodies without validating them again (ingestion did); a body that is not a
    JSON object (written by hand, or damaged) is skipped, logged and counted, and the events around it project."""
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)
    try:
        for batch in ([valid(support.event("run.created", "run-x"))], [valid(support.event("run.created", "run-y"))]):
            item = store_module.Submission(batch, concurrent.futures.Future())
            the_store._commit_group([item])
            assert item.future.result(timeout=0)[:2] == (1, 0)
        with the_store.engine.begin() as conn:  # damage the first event in the log
            conn.execute(sa.update(tables.event_log).where(tables.event_log.c.seq == 1).values(body='["not an event"]'))
        projector = Projector(the_store.engine)
        projector.run_until_caught_up()
        assert projector.folder.skipped == 1
        assert the_store.projected_position() == 2
        assert the_store.get_run("run-x") is None
        assert the_store.get_run("run-y")["event_count"] == 1  # type: ignore[index]
        projector.stop()
    finally:
        the_store.engine.dispose()
