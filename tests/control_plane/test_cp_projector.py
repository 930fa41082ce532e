"""The event log and its projector: many replicas on one database, commit order, crashes, fail-over, rebuild,
read-your-writes and budgets under lag. Real control planes on 127.0.0.1, real SQLite files and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from outrider.common import events
from outrider.control_plane import projection, settings, store, tables
from outrider.control_plane.store.projector import Projector
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import PostgresServer, RunningServer

Start = Callable[[settings.Settings], RunningServer]


def usage(run: str, at: float, cost: float, **extra: Any) -> dict[str, Any]:
    return support.event("run.llm_usage", run, at=at, data={
        "provider": "anthropic", "model": "claude", "input_tokens": 100, "output_tokens": 10, "cost_usd": cost, **extra})


def post(server: RunningServer, batch: list[dict[str, Any]]) -> int:
    response = server.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    assert response.status_code == 202, response.text
    return int(response.json()["position"])


def run_record(server: RunningServer, run: str, position: int) -> dict[str, Any]:
    response = server.client.get(f"/v1/runs/{run}", params={"min_position": position})
    assert response.status_code == 200, response.text
    return dict(response.json())


#: Projections kept as deltas: a row whose count fell to zero stays, where a rebuild never writes it.
DELTA_TABLES = frozenset({"agg_runs", "agg_run_durations", "rollup_runs", "rollup_runs_all", "rollup_runs_day", "rollup_model_runs",
                          "rollup_model_runs_all"})


def projection_tables(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table's rows, sorted: what 'the same records and rollups' means."""
    with engine.connect() as conn:
        return {table.name: sorted(tuple(row) for row in conn.execute(sa.select(table).where(
            *([table.c["count"] != 0] if table.name in DELTA_TABLES else []))))
            for table in store.PROJECTION_TABLES}


def single_fold(batch: list[dict[str, Any]], run: str) -> dict[str, Any]:
    """The run record one process folding ``batch`` in one go would give (the pure fold, no store)."""
    state = projection.empty_state()
    for body in batch:
        projection.merge_into(state, events.CloudEvent.model_validate(body))
    return projection.record(run, state)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


def pg_settings(url: str, **overrides: Any) -> settings.Settings:
    return settings.Settings(**({"database_url": url, "api_tokens": support.TOKEN} | overrides))


@pytest.mark.postgres
def test_two_replicas_on_postgres_lose_and_double_nothing(postgres_url: str, start_server: Start) -> None:
    """The issue's scenario: one run's events alternate between two control planes on one database."""
    a, b = start_server(pg_settings(postgres_url)), start_server(pg_settings(postgres_url))
    run = "alternating"
    sends = [
        (a, support.event("run.created", run, at=0)),
        (a, support.event("run.started", run, at=1)),
        (b, usage(run, 2, 1.0)),
        (a, usage(run, 3, 2.0)),
        (b, support.event("run.succeeded", run, at=4)),
    ]
    position = max(post(server, [body]) for server, body in sends)
    for server in (a, b):
        record = run_record(server, run, position)
        assert record["event_count"] == 5 and record["llm_usage"]["total"]["cost_usd"] == pytest.approx(3.0) and record["status"] == "succeeded"
    assert a.client.get("/v1/runs", params={"min_position": position}).json()["items"][0]["run_id"] == run


@pytest.mark.postgres
@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_interleavings_across_replicas_equal_a_single_fold(postgres_url: str, start_server: Start, data: st.DataObject) -> None:
    """Events of several runs, in a random order, each sent to a random one of three replicas (in random
    request sizes, some twice): every record equals the fold of the run's events in one place."""
    if not hasattr(test_random_interleavings_across_replicas_equal_a_single_fold, "servers"):
        test_random_interleavings_across_replicas_equal_a_single_fold.servers = [  # type: ignore[attr-defined]
            start_server(pg_settings(postgres_url)) for _ in range(3)]
    servers: list[RunningServer] = test_random_interleavings_across_replicas_equal_a_single_fold.servers  # type: ignore[attr-defined]
    tag = data.draw(st.uuids()).hex[:8]
    runs = {f"r-{tag}-{n}": support.lifecycle(f"r-{tag}-{n}", fail=n % 2 == 1, start=n * 7) for n in range(3)}
    everything = [body for batch in runs.values() for body in batch]
    order = data.draw(st.permutations(everything))
    position = 0
    index = 0
    while index < len(order):
        size = data.draw(st.integers(1, 5))
        chunk = list(order[index : index + size])
        if data.draw(st.booleans()):
            chunk = chunk + chunk[:1]  # a retry: duplicates are acknowledged, not counted again
        position = max(position, post(servers[data.draw(st.integers(0, 2))], chunk))
        index += size
    for run, batch in runs.items():
        expected = single_fold(batch, run)
        for server in servers:
            record = run_record(server, run, position)
            assert record == _jsonable(expected), run


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the API serialises it (datetimes as ISO text with Z)."""
    from outrider.control_plane import schemas

    return dict(schemas.RunRecord.model_validate(record).model_dump(mode="json"))


@pytest.mark.postgres
def test_a_late_commit_is_never_skipped(postgres_url: str, start_server: Start) -> None:
    """A replica holds its append transaction open (as a slow disk or a paused process would). Appends of another
    replica wait for it instead of committing higher seqs first, so neither the projector nor a reader paging
    with ?after= can pass over the late event."""
    import psycopg

    server = start_server(pg_settings(postgres_url))
    post(server, [support.event("run.created", "late-1", at=0)])
    url = sa.make_url(postgres_url)
    held = psycopg.connect(host=url.query["host"], port=int(url.query["port"]), user="postgres", dbname=url.database)
    late = support.event("run.started", "late-1", at=1)
    with held.cursor() as cursor:  # what Store._write does, stopped before its commit
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (store.APPEND_LOCK,))
        cursor.execute("SELECT seq FROM event_log_head WHERE id = 1")
        late_seq = cursor.fetchone()[0] + 1
        cursor.execute("INSERT INTO event_keys (source, event_id) VALUES (%s, %s)", (late["source"], late["id"]))
        cursor.execute("INSERT INTO event_log (seq, last_seq, received_at, body) VALUES (%s, %s, now(), %s)",
                       (late_seq, late_seq, json.dumps([late])))
        cursor.execute("UPDATE event_log_head SET seq = %s WHERE id = 1", (late_seq,))
    answered: list[int] = []
    other = threading.Thread(target=lambda: answered.append(post(server, [support.event("run.succeeded", "late-1", at=2)])))
    other.start()
    time.sleep(1.0)
    assert not answered, "an append committed while an earlier one was still open"
    seen = [item["seq"] for item in server.client.get("/v1/events").json()["items"]]
    assert late_seq not in seen and max(seen) < late_seq  # nothing past the open transaction is visible
    held.commit()
    held.close()
    other.join(timeout=30)
    assert answered and answered[0] > late_seq
    seen = [item["seq"] for item in server.client.get("/v1/events").json()["items"]]
    assert seen == sorted(seen) and late_seq in seen
    record = run_record(server, "late-1", answered[0])
    assert record["event_count"] == 3 and record["status"] == "succeeded"


def test_projector_killed_mid_batch_loses_and_doubles_nothing(tmp_path: Any) -> None:
    """kill -9 a projector process while it folds a large log, several times; the next projector finishes the
    job; the projections equal a clean rebuild's."""
    config = settings.Settings(database_url=f"sqlite:///{tmp_path / 'log.db'}", api_tokens=support.TOKEN, projector_enabled=False)
    the_store = store.Store(config)
    store.migrate(the_store.engine)
    the_store.start_projector()  # disabled: no projector
    the_store._writer = threading.Thread(target=the_store._run_writer, daemon=True)
    the_store._writer.start()
    batch = [body for n in range(400) for body in support.lifecycle(f"k-{n}", fail=n % 3 == 0, start=n)]
    for start in range(0, len(batch), 1000):
        the_store.submit([events.CloudEvent.model_validate(b) for b in batch[start : start + 1000]]).result(timeout=60)
    script = ("import sys, sqlalchemy as sa; from outrider.control_plane.store.projector import Projector; "
              "from outrider.control_plane import store; "
              "Projector(store.make_engine(sys.argv[1]), batch_events=400, lease_seconds=0.5).run_until_caught_up()")
    for _ in range(3):  # each time: as soon as it has committed a batch, while it folds the next
        reached = the_store.projected_position()
        child = subprocess.Popen([sys.executable, "-c", script, config.database_url])
        while the_store.projected_position() == reached and child.poll() is None:
            time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        time.sleep(0.6)  # its lease lapses
    assert 0 < the_store.projected_position() < len(batch), "the kills did not land mid-projection; make the log bigger"
    finisher = Projector(the_store.engine, lease_seconds=0.5)
    time.sleep(0.6)
    finisher.run_until_caught_up()
    finisher._release()
    incremental = projection_tables(the_store.engine)
    assert sum(row[1] for row in incremental["agg_event_types"]) == len(batch)
    with the_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(tables.runs.c.event_count))).scalar() == len(batch)
    the_store.rebuild()
    assert projection_tables(the_store.engine) == incremental
    the_store.close()


def test_rebuild_equals_incremental_projection(make_settings: Callable[..., settings.Settings], start_server: Start) -> None:
    server = start_server(make_settings())
    position = 0
    for n in range(12):
        batch = support.lifecycle(f"rb-{n}", target=f"acme/t{n % 3}", fail=n % 4 == 0, start=n * 30)
        batch.append(usage(f"rb-{n}", n * 30 + 5, 0.5, latency_s=0.2 * (n + 1), error="rate limited" if n % 5 == 0 else None))
        position = post(server, batch)
    run_record(server, "rb-0", position)  # caught up
    the_store: store.Store = server.app.state.store
    before = projection_tables(the_store.engine)
    assert before["rollup_llm"] and before["rollup_llm_latency"] and before["rollup_spend"] and before["run_models"]
    assert the_store.rebuild() == len(server.client.get("/v1/events", params={"limit": 1000}).json()["items"])
    assert projection_tables(the_store.engine) == before
    # Models over all targets read the rollups summed over targets: the same as summing the per-target rows.
    from datetime import timedelta

    since = support.BASE_TIME - timedelta(hours=1)
    every_target = store.Scope(targets=frozenset({*(f"acme/t{n}" for n in range(3)), "acme/web"}))
    summed = the_store.model_facts(since, None)
    assert summed and summed == the_store.model_facts(since, None, every_target)


def test_read_your_writes_waits_and_a_stopped_projector_is_visible(make_sqlite_settings: Callable[..., settings.Settings],
                                                                     start_server: Start) -> None:
    server = start_server(make_sqlite_settings(projector_enabled=False, read_wait_max_seconds=0.3, projector_lease_seconds=0.2))
    position = post(server, support.lifecycle("ryw-1"))
    lagging = server.client.get("/v1/runs/ryw-1", params={"min_position": position})
    assert lagging.status_code == 503 and lagging.json()["error"] == "projection_lagging", lagging.text
    assert lagging.headers["Retry-After"] == "1" and lagging.headers["Outrider-Projection-Position"] == "0"
    plain = httpx.get(f"{server.url}/v1/runs/ryw-1", headers={"Authorization": f"Bearer {support.TOKEN}"})
    assert plain.status_code == 404  # not projected yet: without min_position nobody waits
    time.sleep(0.5)  # past the start-up grace (two leases)
    status = server.client.get("/v1/projection").json()
    assert status["position"] == 0 and status["head"] == position and status["lag_events"] == 14 and status["lag_seconds"] > 0
    assert status["stopped"] is not None
    ready = server.anonymous.get("/readyz")
    assert ready.status_code == 503 and "projector" in ready.json()["detail"]
    metrics = server.anonymous.get("/metrics").text
    assert "outrider_projector_up 0.0" in metrics and f"outrider_projection_lag_events {float(position - 0)}" in metrics


def test_the_console_says_catching_up(make_sqlite_settings: Callable[..., settings.Settings], start_server: Start) -> None:
    """A projection more than a few seconds behind is said on every console page, and not otherwise."""
    from datetime import UTC, datetime, timedelta

    from outrider.control_plane.console import router

    server = start_server(make_sqlite_settings(projector_enabled=False))
    page = server.client.get("/runs", headers={"Outrider-Min-Position": "0"})
    assert page.status_code == 200 and "Catching up" not in page.text
    post(server, support.lifecycle("cu-1"))
    with server.app.state.store.engine.begin() as conn:  # as if it had arrived a minute ago
        conn.execute(sa.update(tables.event_log).values(received_at=datetime.now(UTC) - timedelta(minutes=1)))
    page = httpx.get(f"{server.url}/runs", headers={"Authorization": f"Bearer {support.TOKEN}"})
    assert page.status_code == 200 and "Catching up" in page.text and "behind the events received" in page.text
    assert router.CATCHING_UP_SECONDS <= 10


def test_budgets_count_the_unprojected_tail(make_sqlite_settings: Callable[..., settings.Settings], start_server: Start) -> None:
    """With the projector stopped, spend still includes every priced call in the log."""
    from datetime import UTC, datetime, timedelta

    server = start_server(make_sqlite_settings(projector_enabled=False))
    now = datetime.now(UTC)
    calls = [usage("tail-1", 0, cost) for cost in (0.25, 0.5)]
    for offset, call in enumerate(calls):
        call["time"] = (now - timedelta(minutes=5 + offset)).isoformat()
    post(server, calls)
    budgets = server.client.get("/v1/budgets").json()["budgets"]
    assert budgets[0]["scope"] == "global" and budgets[0]["windows"][0]["spent_usd"] == pytest.approx(0.75)
    assert [b["scope"] for b in budgets] == ["global", "acme/web"] and budgets[1]["windows"][1]["spent_usd"] == pytest.approx(0.75)


@pytest.mark.postgres
def test_projector_fails_over_within_seconds(postgres_url: str, start_server: Start) -> None:
    """kill -9 the writer process of the replica whose projector holds the lease: the other replica's projector
    (or the killed one's replacement, which reuses its lease name once the old process is confirmed dead) takes
    over within seconds, and nothing is lost or counted twice."""
    a = start_server(pg_settings(postgres_url, projector_lease_seconds=1.0))
    b = start_server(pg_settings(postgres_url, projector_lease_seconds=1.0))
    position = post(a, support.lifecycle("fo-1"))
    run_record(b, "fo-1", position)
    holder = a.client.get("/v1/projection").json()["holder"]
    # The lease is held by the projector in one replica's writer process (named by that replica's server).
    [leader] = [server for server in (a, b) if server.app.state.store._remote.projector_name == holder]
    os.kill(leader.app.state.store._remote._process.pid, signal.SIGKILL)
    started = time.monotonic()
    survivor = b if leader is a else a
    deadline = time.monotonic() + 30
    while True:
        try:
            position = post(survivor, support.lifecycle("fo-2"))
            break
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    record = run_record(survivor, "fo-2", position)
    took = time.monotonic() - started
    assert record["event_count"] == 14 and took < 15, took
    status = survivor.client.get("/v1/projection").json()
    assert status["holder"] and status["heartbeat_age_seconds"] < 2 and status["lag_events"] == 0
    assert run_record(survivor, "fo-1", position)["event_count"] == 14


def test_trends_and_errors_from_the_run_rollup_equal_the_run_records(make_settings: Callable[..., settings.Settings],
                                                                     start_server: Start) -> None:
    """Hourly buckets read from the run rollup give what bucketing the run records gives; error groups too."""
    from datetime import UTC, datetime, timedelta

    server = start_server(make_settings())
    now = datetime.now(UTC)
    position = 0
    for n in range(24):
        batch = support.lifecycle(f"tr-{n}", target=f"acme/t{n % 3}", fail=n % 4 == 0)
        shift = now - timedelta(hours=n * 3 + 1) - support.BASE_TIME
        for body in batch:  # spread over three days, some finishing in a later hour than they started
            moment = datetime.fromisoformat(body["time"].replace("Z", "+00:00")) + shift + timedelta(minutes=n * 7)
            body["time"] = moment.isoformat()
        position = post(server, batch)
    run_record(server, "tr-0", position)
    the_store: store.Store = server.app.state.store
    for size in (3600, 6 * 3600, 86400):
        start = datetime.fromtimestamp((int((now - timedelta(days=4)).timestamp()) // size) * size, UTC)
        assert the_store.trend_cells(start, size, None) == the_store._trend_cells_of_runs(start, size, None), size
        assert the_store.trend_cells(start, size, "acme/t1") == the_store._trend_cells_of_runs(start, size, "acme/t1"), size
    for column in ("target", "error_type", "error_stage"):
        groups = the_store.finished_groups(now - timedelta(days=5), column)
        assert sum(count for _, status, count in groups if status == "failed") == 6, groups


def test_a_position_that_can_never_be_reached_is_refused(api: RunningServer) -> None:
    """min_position beyond the log's end (no ingestion answered it) or not a position: 422 at once, never a wait."""
    position = post(api, support.lifecycle("bad-pos-1"))
    for value, error in ((position + 1_000, "invalid_position"), (-1, "invalid_request"), ("x", "invalid_request")):
        started = time.monotonic()
        response = api.client.get("/v1/runs/bad-pos-1", params={"min_position": value})
        assert response.status_code == 422 and response.json()["error"] == error, response.text
        assert time.monotonic() - started < api.config.read_wait_max_seconds
    header = httpx.get(f"{api.url}/v1/runs", headers={"Authorization": f"Bearer {support.TOKEN}",
                                                       "Outrider-Min-Position": str(position + 1_000)})
    assert header.status_code == 422 and header.json()["error"] == "invalid_position"
    assert run_record(api, "bad-pos-1", position)["event_count"] == 14  # the valid position still answers


class OverlappingWrites(Projector):
    """A projector whose write thread starts each batch's write only once the next batch has been folded, so every
    batch is folded while the one before it is in flight (the case the pipeline must get right, every time);
    ``fail_at``: the write of that batch (1-based) fails as a database outage would."""

    def __init__(self, engine: sa.Engine, *, fail_at: int | None = None, **options: Any) -> None:
        super().__init__(engine, **options)
        self.fail_at = fail_at
        self.writes = 0
        self.overlapped = 0  # batches folded while the write before them was still running
        self._folded_from: set[int] = set()
        self._folding = threading.Condition()

    def _prepare(self, position: int, version: int, limit: int, inflight: Any) -> Any:
        prepared = super()._prepare(position, version, limit, inflight)
        if inflight is not None and not inflight.future.done():
            self.overlapped += 1
        with self._folding:
            self._folded_from.add(position)
            self._folding.notify_all()
        return prepared

    def _write(self, prepared: Any) -> None:
        with self._folding:
            self._folding.wait_for(lambda: prepared.end in self._folded_from, timeout=10)
        self.writes += 1
        if self.writes == self.fail_at:
            raise sa.exc.OperationalError("INSERT …", {}, Exception("disk I/O error (injected)"))
        super()._write(prepared)


def _mixed_log(runs: int) -> list[dict[str, Any]]:
    """Runs whose events spread over many small batches, each with LLM calls on two models, the second model's
    first call in a later batch than the first's (``run_models`` rows added while an earlier batch is in flight)."""
    batch: list[dict[str, Any]] = []
    for n in range(runs):
        batch += support.lifecycle(f"pl-{n}", target=f"acme/t{n % 3}", fail=n % 4 == 0, start=n * 30)
    for n in range(runs):  # later in the log: a second model, and a call with the first one again
        batch.append(usage(f"pl-{n}", n * 30 + 20, 0.25, model="opus", latency_s=0.5))
        batch.append(usage(f"pl-{n}", n * 30 + 21, 0.5, latency_s=1.0))
    return batch


@pytest.mark.parametrize("fail_at", [None, 3], ids=["all-writes-succeed", "a-write-fails-under-the-next-fold"])
def test_a_batch_folded_while_the_one_before_is_written_projects_what_one_after_the_other_does(
        make_settings: Callable[..., settings.Settings], fail_at: int | None) -> None:
    """The pipeline (``Projector._step_pipelined``) against one batch at a time (a rebuild of this small log is one
    batch): the same records and rollups, and a write that fails while the next batch is already folded loses and
    doubles nothing once projection resumes."""
    the_store = store.Store(make_settings(store_writer="thread", projector_enabled=False))
    store.migrate(the_store.engine)
    the_store.open()
    try:
        batch = _mixed_log(8)
        requests = range(0, len(batch), 9)  # a log row each, and a batch each (batch_events=7 < 9)
        for start in requests:
            the_store.submit([events.CloudEvent.model_validate(b) for b in batch[start : start + 9]]).result(timeout=60)
        projector = OverlappingWrites(the_store.engine, batch_events=7, fail_at=fail_at)
        try:
            if fail_at is not None:
                with pytest.raises(sa.exc.OperationalError, match="injected"):
                    projector.run_until_caught_up(timeout=120)
                assert the_store.projected_position() < len(batch)
            projector.run_until_caught_up(timeout=120)
        finally:
            projector.stop()
        # every batch but the first, less the two the failure dropped (folded again afterwards)
        assert projector.overlapped >= len(requests) - 3, "batches were not folded while the one before was written"
        pipelined = projection_tables(the_store.engine)
        with the_store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.sum(tables.runs.c.event_count))).scalar() == len(batch)
        assert {row[1] for row in pipelined["run_models"]} == {f"pl-{n}" for n in range(8)}
        assert len(pipelined["run_models"]) == 16
        the_store.rebuild()
        assert projection_tables(the_store.engine) == pipelined
    finally:
        the_store.close()
