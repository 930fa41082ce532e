"""The event log as one row per accepted request (migration 0011): what ingestion's fast path accepts equals what
the exact path accepts; duplicates inside a request, across the requests of one group commit and against the
stored keys are numbered out of the log and answered as duplicates; a retention sweep forgets the keys and
drops the log rows it emptied; a database from before the migration keeps every event and projects on; and the
projector defers to a busy appender only while it is more than a batch behind, and only for so long."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, model_validator

from outrider.common import events
from outrider.control_plane import settings as settings_module
from outrider.control_plane import store, tables
from outrider.control_plane.store import engine as engine_module
from outrider.control_plane.store import log_format
from outrider.control_plane.store.projector import Projector
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

Start = Callable[[settings_module.Settings], RunningServer]


def exact(raw: bytes) -> list[events.CloudEvent] | None:
    """The exact path: decode, then validate event by event (what a body the fast path declines goes through)."""
    batch = json.loads(raw)
    checked = [events.validate_event(item, index) for index, item in enumerate(batch)]
    if any(problems for _, problems in checked):
        return None
    return [event for event, _ in checked if event is not None]


json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["run.log", "run.llm_usage", "run.progress", "run.created", "custom.thing", "target.status", "pr.created"]),
    data=st.dictionaries(st.sampled_from(["stage", "iteration", "level", "message", "provider", "model", "input_tokens",
                                          "output_tokens", "cost_usd", "number", "url", "extra", "nested"]), json_values, max_size=6),
    extension=json_values,
    with_runid=st.booleans(),
    with_time=st.booleans(),
    namespace=st.sampled_from([None, "team-a"]),
    default_namespace=st.sampled_from(["default", "team-b"]),
    default_target=st.sampled_from([None, "org/run-target"]),
)
def test_the_fast_path_accepts_exactly_what_the_exact_path_accepts(  # noqa: PLR0913 — hypothesis draws each
        kind: str, data: dict[str, Any], extension: Any, with_runid: bool, with_time: bool, namespace: str | None,
        default_namespace: str, default_target: str | None) -> None:
    """Random data and extension values against the type models: wherever the exact path accepts a body, the fast
    path gives the same events (the same stored JSON) or declines; wherever it refuses, the fast path declines.
    Given a credential's scope defaults, both are appended to the log as the same text."""
    event = support.event(kind, "run-x" if with_runid else None, data=data)
    event["ext"] = extension
    if namespace is not None:
        event["namespace"] = namespace
    if not with_time:
        del event["time"]
    raw = json.dumps([event, support.event("run.created", "run-y", target=None)]).encode()
    expected = exact(raw)
    fast = events.validate_json_fast(raw, array=True)
    if expected is None:
        assert fast is None
    elif fast is not None:
        assert events.dump_batch_json(fast) == events.dump_batch_json(expected)
        events.fill_scope_defaults(fast, default_namespace, default_target)
        events.fill_scope_defaults(expected, default_namespace, default_target)
        appended, wanted = log_format.encode(fast), log_format.encode(expected)
        assert (appended.keys, appended.body) == (wanted.keys, wanted.body)
    if with_time and expected is not None:  # a body with every time given is never sent the slow way for nothing
        assert fast is not None


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"[[1e400]]"])
def test_numbers_json_refuses_are_never_accepted_by_the_fast_path(value: bytes) -> None:
    body = json.dumps([support.event("custom.thing", data={"x": 1})]).encode().replace(b'{"x": 1}', b'{"x": ' + value + b"}")
    assert events.validate_json_fast(body, array=True) is None


def test_too_deep_data_is_declined_by_the_fast_path() -> None:
    deep: Any = 1
    for _ in range(events.MAX_DEPTH):
        deep = [deep]
    body = json.dumps([support.event("custom.thing", data={"x": deep})]).encode()
    assert events.validate_json_fast(body, array=True) is None
    assert exact(body) is None



@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(events._DATA_LIST_VALIDATORS)), data=st.dictionaries(
    st.sampled_from(["stage", "iteration", "max_iterations", "level", "message", "provider", "model", "input_tokens",
                     "output_tokens", "cost_usd", "latency_s", "number", "url", "error_type", "open_prs", "extra", "health",
                     "breaker_state", "consecutive_failures", "trips", "active_runs", "pending_runs", "max_open_prs",
                     "max_concurrent_runs", "cooldown_until", "phase"]),
    json_values | st.integers(min_value=-1, max_value=5) | st.sampled_from(
        ["Healthy", "Closed", "info", "plan", "anthropic", "2026-12-06T05:00:00Z", "https://example.invalid/pr/1"]),
    max_size=16))
def test_each_types_data_check_passes_exactly_what_its_model_accepts(kind: str, data: dict[str, Any]) -> None:
    """The fast path checks a type's data without building its model: it must pass exactly what the model accepts."""
    model = events._DATA_CHECKS[kind]
    try:
        model.model_validate(data)
        accepted = True
    except ValidationError:
        accepted = False
    try:
        events._DATA_LIST_VALIDATORS[kind]([data])
        passed = True
    except ValidationError:
        passed = False
    assert passed == accepted


def test_a_data_model_with_a_rule_after_its_fields_is_checked_whole() -> None:
    """A model whose schema has a validator outside its fields (here: after them) is checked as the model, so the
    fast path never skips a rule."""

    class Ordered(events.EventData):
        low: int
        high: int

        @model_validator(mode="after")
        def _ordered(self) -> Ordered:
            if self.low > self.high:
                raise ValueError("low above high")
            return self

    check = events._fields_only_list_validator(Ordered)
    check([{"low": 1, "high": 2}])
    with pytest.raises(ValidationError):
        check([{"low": 3, "high": 2}])

def post(server: RunningServer, batch: list[dict[str, Any]]) -> dict[str, Any]:
    response = server.client.post("/v1/events", content=json.dumps(batch), headers=support.BATCH)
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_duplicates_are_numbered_out_of_the_log(make_sqlite_settings: Callable[..., settings_module.Settings], start_server: Start) -> None:
    server = start_server(make_sqlite_settings())
    a, b, c = (support.event("run.log", "dup-1", data={"level": "info", "message": m}) for m in "abc")
    assert post(server, [a, b, a]) == {"accepted": 2, "duplicates": 1, "position": 2}
    assert post(server, [b, c]) == {"accepted": 1, "duplicates": 1, "position": 3}
    assert post(server, [a]) == {"accepted": 0, "duplicates": 1, "position": 3}  # where the stored one is, at most
    listed = server.client.get("/v1/events").json()["items"]
    assert [(item["seq"], item["event"]["id"]) for item in listed] == [(1, a["id"]), (2, b["id"]), (3, c["id"])]
    with server.app.state.store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.event_log.c.seq, tables.event_log.c.last_seq, tables.event_log.c.skip)
                            .order_by(tables.event_log.c.seq)).all()
    assert [tuple(row) for row in rows] == [(1, 2, "[2]"), (3, 3, "[0]")]


def test_a_group_commit_numbers_duplicates_across_its_requests(make_settings: Callable[..., settings_module.Settings]) -> None:
    """Requests committed together: a key belongs to the first request that carries it, in queue order."""
    the_store = store.Store(make_settings(projector_enabled=False))
    store.migrate(the_store.engine)
    try:
        first, second, old = (support.event("run.created", f"grp-{n}") for n in range(3))
        done = [store.Submission([events.CloudEvent.model_validate(old)], concurrent.futures.Future())]
        the_store._commit_group(done)
        assert done[0].future.result(timeout=0) == (1, 0, 1)
        group = [store.Submission([events.CloudEvent.model_validate(e) for e in batch], concurrent.futures.Future())
                 for batch in ([first, old], [second, first, second])]
        the_store._commit_group(group)
        assert [item.future.result(timeout=0) for item in group] == [(1, 1, 3), (1, 2, 3)]
        with the_store.engine.connect() as conn:
            rows = conn.execute(sa.select(tables.event_log.c.seq, tables.event_log.c.last_seq, tables.event_log.c.body,
                                          tables.event_log.c.skip).order_by(tables.event_log.c.seq)).all()
            keys = conn.execute(sa.select(sa.func.count()).select_from(tables.event_keys)).scalar()
        assert keys == 3
        numbered = [(seq, event["id"]) for first_seq, _, body, skip in rows for seq, event in log_format.explode(first_seq, body, skip)]
        assert numbered == [(1, old["id"]), (2, first["id"]), (3, second["id"])]
    finally:
        the_store.engine.dispose()


def test_a_sweep_forgets_keys_and_drops_the_log_rows_it_emptied(make_sqlite_settings: Callable[..., settings_module.Settings],
                                                                 start_server: Start) -> None:
    server = start_server(make_sqlite_settings())
    old = [support.event("run.log", "sweep-1", at=n, data={"level": "info", "message": str(n)}) for n in range(3)]
    mixed = [support.event("run.log", "sweep-1", at=10, data={"level": "info", "message": "old"}),
             support.event("run.log", "sweep-1", at=86_400 * 400, data={"level": "info", "message": "new"})]
    post(server, old)
    position = post(server, mixed)["position"]
    the_store: store.Store = server.app.state.store
    the_store.wait_projected(position)
    assert the_store.sweep(support.BASE_TIME + timedelta(days=1)) == 4
    with the_store.engine.connect() as conn:
        logged = conn.execute(sa.select(tables.event_log.c.seq)).scalars().all()
        keys = {tuple(row) for row in conn.execute(sa.select(tables.event_keys.c.source, tables.event_keys.c.event_id))}
    assert logged == [4]  # the first request's row is empty now; the second keeps its recent event
    assert keys == {(mixed[1]["source"], mixed[1]["id"])}
    assert post(server, [old[0]])["accepted"] == 1  # swept: the same event is new again, as it always was


def _alembic(engine: sa.Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_a_database_from_before_the_request_log_keeps_every_event(tmp_path: Path) -> None:
    """At revision 0010 (one log row per event) with a partly projected log: after the migration every event is in
    the log with its seq, the unprojected ones are projected, and ingestion continues above the old head."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = store.make_engine(url)
    _alembic(engine, "upgrade", "0010")
    stored = [support.event("run.created", f"old-{n}") for n in range(5)]
    with engine.begin() as conn:
        for seq, event in enumerate(stored, start=1):
            conn.execute(sa.text("INSERT INTO events (seq, source, event_id, type, time, target, run_id, received_at, namespace, body) "
                                 "VALUES (:seq, :source, :id, :type, :time, :target, :run, :received, 'default', :body)"),
                         {"seq": seq * 2, "source": event["source"], "id": event["id"], "type": event["type"],
                          "time": "2026-01-01 12:00:00.000000", "target": event["target"], "run": event["runid"],
                          "received": "2026-01-01 12:00:01.000000", "body": json.dumps(event)})
        conn.execute(sa.text("UPDATE projector_state SET position = 4 WHERE id = 1"))  # two of five projected
    engine.dispose()
    the_store = store.Store(settings_module.Settings(database_url=url, api_tokens=support.TOKEN, projector_enabled=False))
    the_store.open()
    try:
        assert the_store.log_head() == 10
        with the_store.engine.connect() as conn:
            assert conn.execute(sa.select(tables.events.c.seq).order_by(tables.events.c.seq)).scalars().all() == [2, 4]
        Projector(the_store.engine).run_until_caught_up(timeout=60)
        assert [(item["seq"], item["event"]["id"]) for item in the_store.list_events()] == [(2 * n, e["id"]) for n, e in enumerate(stored, 1)]
        appended = the_store.submit([events.CloudEvent.model_validate(stored[0]), events.CloudEvent.model_validate(support.event("run.created", "new-1"))])
        assert appended.result(timeout=30) == (1, 1, 11)
    finally:
        the_store.close()
    _alembic(store.make_engine(url), "downgrade", "0010")  # back to one row per event, the new event included
    with store.make_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT max(seq), count(*) FROM events")).one() == (11, 6)


def _names(path: Path, kind: str = "table") -> set[str]:
    """The tables (or indexes) one SQLite file holds, read from the file itself."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def test_a_database_from_before_the_projections_file_moves_its_projections_once(tmp_path: Path) -> None:
    """At revision 0011 everything is in one SQLite file: the migration moves the tables the projector writes, rows
    and indexes, into the projections file; a move cut short (a copy left in the projections file while the main
    file still has the table) is redone from the main file; and a downgrade moves them back."""
    database = tmp_path / "old.db"
    url = f"sqlite:///{database}"
    engine = store.make_engine(url)
    _alembic(engine, "upgrade", "0011")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE event_log_head SET seq = 7 WHERE id = 1"))  # a log swept empty, 7 events in
        conn.execute(sa.text("UPDATE projector_state SET position = 7 WHERE id = 1"))
        conn.execute(sa.text("INSERT INTO agg_event_types (type, count) VALUES ('run.created', 7)"))
        conn.execute(sa.text("CREATE TABLE projections.agg_event_types (type TEXT)"))  # a move cut short
    engine.dispose()

    store.migrate(store.make_engine(url))
    moved = {table.name for table in tables.PROJECTOR_TABLES}
    projections = engine_module.projections_file(database)
    assert _names(projections) >= moved and not _names(database) & moved
    assert {"ix_events_run_id_seq", "ix_runs_target_created_at_run_id"} <= _names(projections, "index")
    with store.make_engine(url).connect() as conn:  # read unqualified, as every query does
        assert conn.execute(sa.text("SELECT position FROM projector_state")).scalar() == 7
        assert conn.execute(sa.text("SELECT type, count FROM agg_event_types")).all() == [("run.created", 7)]
    store.migrate(store.make_engine(url))  # again: nothing left to move
    _alembic(store.make_engine(url), "downgrade", "0011")
    assert not _names(projections) & moved and _names(database) >= moved
    with store.make_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count FROM main.agg_event_types")).scalar() == 7


def _fill(url: str, *batches: list[dict[str, Any]], sweep_before: datetime | None = None) -> list[dict[str, Any]]:
    """Append ``batches`` to the SQLite store at ``url`` (one log row each), project them, optionally sweep; every
    run record, in list order."""
    the_store = store.Store(settings_module.Settings(database_url=url, api_tokens=support.TOKEN, projector_enabled=False))
    the_store.open()
    try:
        for batch in batches:
            the_store.submit([events.CloudEvent.model_validate(item) for item in batch]).result(timeout=30)
        projector = Projector(the_store.engine)
        try:
            projector.run_until_caught_up(timeout=60)
        finally:
            projector.stop()  # gives the lease back for the next start
        if sweep_before is not None:
            assert the_store.sweep(sweep_before) > 0
        return the_store.list_runs(limit=1000)
    finally:
        the_store.close()


def _remove_projections(database: Path) -> None:
    for path in database.parent.glob(database.name + "-projections*"):
        path.unlink()


@pytest.mark.parametrize("swept", [False, True], ids=["whole-log", "after-a-sweep"])
def test_a_lost_projections_file_is_replayed_from_the_log(tmp_path: Path, swept: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The projections file deleted (or not restored with the log): the next start creates its tables empty, with the
    checkpoint at the log's start, says so, and the projector replays the log into the same run records (before,
    every read and the projector failed on "no such table" for good). After a sweep, ``swept_through`` says where
    the log starts now, so a later ``rebuild`` asks for ``--force``."""
    database = tmp_path / "store.db"
    url = f"sqlite:///{database}"
    old = [*support.lifecycle("lost-old"), support.event("target.status", None, data={"health": "Healthy"})]
    new = [*support.lifecycle("lost-new", start=86_400 * 3, fail=True), *support.lifecycle("lost-other", "acme/api", start=86_400 * 3)]
    before = _fill(url, old, new, sweep_before=support.BASE_TIME + timedelta(days=1) if swept else None)
    _remove_projections(database)

    the_store = store.Store(settings_module.Settings(database_url=url, api_tokens=support.TOKEN, projector_enabled=False))
    with caplog.at_level("WARNING", logger=engine_module.__name__):
        the_store.open()
    try:
        assert "store.db-projections was missing" in caplog.text and "replays the event log" in caplog.text
        assert _pair_ids(database)[0] == _pair_ids(database)[1] != 0  # the new file is marked as this log's
        assert the_store.projection_status()["position"] == 0
        Projector(the_store.engine).run_until_caught_up(timeout=60)
        after = the_store.list_runs(limit=1000)
        if swept:
            assert [run["run_id"] for run in after] == [run["run_id"] for run in before if run["run_id"] != "lost-old"]
            assert the_store.projection_status()["swept_through"] == len(old)
            assert f"events up to seq {len(old)} were deleted by retention" in caplog.text
            with pytest.raises(store.RebuildRefused):
                the_store.rebuild()
        else:
            assert after == before and the_store.projection_status()["swept_through"] == 0
        assert len(the_store.list_events(limit=1000)) == len(new) + (0 if swept else len(old))
    finally:
        the_store.close()


@pytest.mark.parametrize("log_file", ["older", "lost"])
def test_projections_ahead_of_their_log_stop_the_start_and_change_nothing(tmp_path: Path, log_file: str) -> None:
    """A log file older than its projections (restored from another backup) or started afresh (lost) next to
    projections that went further: the projector would pass over every event the log numbers up to its checkpoint,
    silently. The start stops with a message naming both files and both seqs, before anything is written; the
    ``outrider store`` commands and ``outrider control-plane`` exit with it, without a traceback."""
    database = tmp_path / "store.db"
    url = f"sqlite:///{database}"
    first, second = support.lifecycle("ahead-1"), support.lifecycle("ahead-2")
    _fill(url, first)
    backup = tmp_path / "backup.db"
    with contextlib.closing(sqlite3.connect(database)) as source, contextlib.closing(sqlite3.connect(backup)) as copy:
        source.backup(copy)  # the log file alone, after the first run
    projected = _fill(url, second)
    for path in database.parent.glob(database.name + "*"):
        if "projections" not in path.name:
            path.unlink()
    if log_file == "older":
        backup.rename(database)
    projections = engine_module.projections_file(database)
    kept = projections.read_bytes()

    with pytest.raises(store.ProjectionsMismatch) as refused:
        store.migrate(store.make_engine(url))
    head = len(first) if log_file == "older" else 0
    assert f"up to seq {len(first) + len(second)}, but the log {database} ends at seq {head}" in str(refused.value)
    assert "move the projections file aside" in str(refused.value)
    assert projections.read_bytes() == kept
    with contextlib.closing(sqlite3.connect(projections)) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (len(projected),)

    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")} | {"OUTRIDER_DATABASE_URL": url, "COLUMNS": "1000"}
    for args in (["store", "status"], ["control-plane", "--host", "127.0.0.1", "--port", "0"]):
        ran = subprocess.run([sys.executable, "-m", "outrider.cli.main", *args], capture_output=True, text=True,
                             timeout=120, env=env, cwd=tmp_path)
        assert ran.returncode == 1, (args, ran.stdout, ran.stderr)
        assert "error:" in ran.stderr and f"ends at seq {head}" in ran.stderr and "Traceback" not in ran.stderr, args
    _remove_projections(database)  # what the message offers: the log is then replayed into new projections
    assert [run["run_id"] for run in _fill(url)] == (["ahead-1"] if log_file == "older" else [])


def _pair_ids(database: Path) -> tuple[int, int]:
    """The pair marks (header ``user_version``) of a database's log file and projections file."""
    marks = []
    for path in (database, engine_module.projections_file(database)):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            marks.append(conn.execute("PRAGMA user_version").fetchone()[0])
    return marks[0], marks[1]


def test_a_projections_file_of_another_database_stops_the_start(tmp_path: Path) -> None:
    """Another database's projections file beside a log (a copy mixed up between two control planes) whose checkpoint
    is within this log: the position alone cannot tell, the pair mark both files carry does; a database from before
    the mark gets one at its next start."""
    ours, theirs = tmp_path / "ours" / "store.db", tmp_path / "theirs" / "store.db"
    for database, runs in ((ours, ["ours-1", "ours-2"]), (theirs, ["theirs-1"])):
        database.parent.mkdir()
        _fill(f"sqlite:///{database}", *[support.lifecycle(run) for run in runs])
    assert _pair_ids(ours)[0] == _pair_ids(ours)[1] != 0 and _pair_ids(ours) != _pair_ids(theirs)
    _remove_projections(ours)
    with contextlib.closing(sqlite3.connect(engine_module.projections_file(theirs))) as source, \
            contextlib.closing(sqlite3.connect(engine_module.projections_file(ours))) as copy:
        source.backup(copy)
    with pytest.raises(store.ProjectionsMismatch, match="belongs to another database than the log"):
        store.migrate(store.make_engine(f"sqlite:///{ours}"))

    for path in (theirs, engine_module.projections_file(theirs)):  # as a database from before the mark
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA user_version = 0")
    store.migrate(store.make_engine(f"sqlite:///{theirs}"))
    assert _pair_ids(theirs)[0] == _pair_ids(theirs)[1] != 0


@pytest.mark.parametrize("held", ["log", "projections"])
def test_the_appender_and_the_projector_never_wait_for_each_others_file(
        held: str, make_sqlite_settings: Callable[..., settings_module.Settings]) -> None:
    """SQLite keeps the log and the projections in two files, each with its own write lock: while another connection
    holds one file's lock, the writer of the other file commits (before, the appender waited for every projector
    transaction, and the projector for every group). The holder commits only once the check is done; a writer that
    waited would still be waiting."""
    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    store.migrate(the_store.engine)
    database = the_store.settings.sqlite_path()
    files = {"log": database, "projections": engine_module.projections_file(database)}
    assert {"runs", "events", "projector_state"} <= _names(files["projections"])
    assert {"event_log", "event_keys"} <= _names(database) and "runs" not in _names(database)
    blocker = sqlite3.connect(files[held], isolation_level=None, check_same_thread=False)
    projector = Projector(the_store.engine)
    try:
        first = store.Submission([events.CloudEvent.model_validate(support.event("run.created", "apart-1"))],
                                  concurrent.futures.Future())
        the_store._commit_group([first])  # something for the projector to write
        assert first.future.result(timeout=0) == (1, 0, 1)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("CREATE TABLE holding (n INTEGER)")  # a write: the file's lock is taken until COMMIT
        outcome: dict[str, Any] = {}

        def write() -> None:
            try:
                if held == "projections":
                    item = store.Submission([events.CloudEvent.model_validate(support.event("run.created", "apart-0"))],
                                             concurrent.futures.Future())
                    the_store._commit_group([item])
                    outcome["result"] = item.future.result(timeout=0)
                else:
                    outcome["result"] = projector.run_until_caught_up(timeout=60)
                    assert outcome["result"] == 1
            except BaseException as exc:  # noqa: BLE001 — reported below
                outcome["result"] = exc

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=20)  # SQLite's busy timeout is 30 s: a writer waiting for the held lock is still here
        assert not writer.is_alive(), f"the writer of the other file waited for the {held} file's lock"
        assert not isinstance(outcome["result"], BaseException), outcome["result"]
        blocker.execute("COMMIT")
    finally:
        blocker.close()
        projector.stop()
        the_store.engine.dispose()


def test_the_projector_defers_to_a_busy_appender_only_while_behind_and_not_for_long(
        make_sqlite_settings: Callable[..., settings_module.Settings]) -> None:
    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    store.migrate(the_store.engine)
    projector = Projector(the_store.engine, batch_events=10, defer_seconds=2.0)
    try:
        def append(count: int) -> None:
            batch = [events.CloudEvent.model_validate(support.event("run.created", f"defer-{time.monotonic_ns()}-{n}")) for n in range(count)]
            the_store._commit_group([store.Submission(batch, concurrent.futures.Future())])

        append(5)
        assert not projector._deferring()  # less than a batch behind: a steady rate, it keeps up
        append(10)
        assert projector._deferring()  # a burst: the appender just committed and 15 events wait
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        sa.event.listen(the_store.engine, "before_cursor_execute", count)
        assert projector._deferring()
        assert statements == []  # while deferring, only the clock and the turn file are read: no query
        sa.event.remove(the_store.engine, "before_cursor_execute", count)
        time.sleep(store.engine.WriteTurn.ACTIVE_SECONDS * 2)
        assert not projector._deferring()  # the appender has gone quiet
        append(1)
        with the_store.engine.begin() as conn:  # as if the oldest waiting event had arrived 3 s ago
            first = conn.execute(sa.select(sa.func.min(tables.event_log.c.seq))).scalar()
            conn.execute(sa.update(tables.event_log).where(tables.event_log.c.seq == first)
                         .values(received_at=datetime.now(UTC) - timedelta(seconds=3)))
        assert not projector._deferring()  # waited longer than defer_seconds: projection goes on
        with the_store.engine.begin() as conn:  # even once the oldest waiting event is young again
            conn.execute(sa.update(tables.event_log).values(received_at=datetime.now(UTC)))
        append(1)
        assert not projector._deferring()  # the burst used its budget: no deferring until caught up
        Projector(the_store.engine).run_until_caught_up(timeout=60)
        append(1)
        assert not projector._deferring()  # caught up: the next burst has a budget again
        append(12)
        assert projector._deferring()
        assert not Projector(the_store.engine, batch_events=10)._deferring()  # defer_seconds 0: never
    finally:
        projector.stop()
        the_store.engine.dispose()


def test_the_projector_does_not_defer_to_a_steady_load_it_fell_behind_in(
        make_sqlite_settings: Callable[..., settings_module.Settings]) -> None:
    """Deferring is for a burst: an appender that has been committing without a pause for longer than the defer
    budget is a steady load, and a projector a batch behind in it (a slow batch, a busy machine) catches up at
    once instead of letting its oldest event wait out the budget."""
    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    store.migrate(the_store.engine)
    budget = 0.5
    projector = Projector(the_store.engine, batch_events=10, defer_seconds=budget)
    try:
        def append(count: int) -> None:
            batch = [events.CloudEvent.model_validate(support.event("run.created", f"steady-{time.monotonic_ns()}-{n}")) for n in range(count)]
            the_store._commit_group([store.Submission(batch, concurrent.futures.Future())])

        def catch_up() -> None:
            other = Projector(the_store.engine)
            other.run_until_caught_up(timeout=60)
            other.stop()  # releases the lease

        append(12)
        assert projector._deferring()  # a burst from quiet: deferring, as before
        catch_up()
        projector = Projector(the_store.engine, batch_events=10, defer_seconds=budget)
        deadline = time.monotonic() + 30
        while (projector._turn.appender_busy_for() or 0) < budget:  # a steady load: commits closer than ACTIVE_SECONDS
            assert time.monotonic() < deadline, "could not keep the appender busy for the defer budget"
            append(1)
            time.sleep(store.engine.WriteTurn.ACTIVE_SECONDS / 10)
        append(12)  # the projector is now more than a batch behind, and its oldest event is young
        assert not projector._deferring()
        catch_up()
        time.sleep(store.engine.WriteTurn.ACTIVE_SECONDS * 2)
        assert projector._turn.appender_busy_for() is None  # quiet again
        append(12)
        assert projector._deferring()  # the next commit begins a burst: deferring again
    finally:
        projector.stop()
        the_store.engine.dispose()



def test_a_commit_waits_for_another_writer_instead_of_failing(
        make_sqlite_settings: Callable[..., settings_module.Settings]) -> None:
    """Another connection holds the write lock of the log's SQLite file (a console session being saved, say) when
    the appender begins: the appender waits for it and commits. Found in CI: with a deferred BEGIN the appender read
    the log head first, the other writer committed, and the appender's write then failed at once on its stale
    snapshot ("database is locked", SQLITE_BUSY_SNAPSHOT, which the busy timeout does not wait out): a refusal went
    uncounted."""

    the_store = store.Store(make_sqlite_settings(projector_enabled=False))
    store.migrate(the_store.engine)
    blocker = sqlite3.connect(str(the_store.settings.sqlite_path()), isolation_level=None, check_same_thread=False)
    try:
        for n, item in enumerate([store.Rejection("unauthorized", 1, concurrent.futures.Future()),  # reads, then writes
                                  store.Submission([events.CloudEvent.model_validate(support.event("run.created", "waits-0"))],
                                                    concurrent.futures.Future())]):
            blocker.execute("BEGIN IMMEDIATE")
            blocker.execute(f"INSERT INTO store_probe (id, written_at) VALUES ({n + 1}, '2026-12-06 12:00:00')")
            threading.Timer(0.5, blocker.execute, ("COMMIT",)).start()
            the_store._commit_group([item])
            assert item.future.result(timeout=1) is not None
        with the_store.engine.connect() as conn:
            assert conn.execute(sa.select(tables.agg_rejections.c.count).where(tables.agg_rejections.c.reason == "unauthorized")).scalar() == 1
    finally:
        blocker.close()
        the_store.engine.dispose()
