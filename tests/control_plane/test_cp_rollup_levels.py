"""The rollup levels that keep 30-day analytics independent of the number of runs (migration 0010): runs summed
over targets and per day, run outcomes per model. Each answer read from them is checked against a
recomputation from raw rows (the events, the run records), after projecting in small batches so that runs change
status between batches; a rebuild from the log, the migration's backfill and a retention sweep must all leave the
same rows and answers. SQLite and PostgreSQL."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from outrider.common import events
from outrider.control_plane import projection, settings, store, tables
from outrider.control_plane.store import rollups
from outrider.control_plane.store.projector import Projector
from tests.control_plane import cp_support as support

NEW_TABLES = (tables.rollup_runs_all, tables.rollup_runs_day, tables.rollup_model_runs, tables.rollup_model_runs_all)
TARGETS = ("acme/a", "acme/b", "acme/c", None)
HOUR = 3600


def runs_over_days() -> list[dict[str, Any]]:
    """48 runs over ~5 days, in two namespaces, four targets (one run in four without one), two models; they
    succeed, fail, are cancelled or still run, and some get a call to a new model after they ended."""
    batch: list[dict[str, Any]] = []
    for n in range(48):
        run, target = f"lv-{n}", TARGETS[n % 4]
        start = n * 2.5 * HOUR + n * 97
        bodies = support.lifecycle(run, target=target or "acme/a", fail=n % 3 == 0, start=start)
        if n % 5 == 4:
            bodies = bodies[:-1]  # still running
        elif n % 7 == 6 and n % 3:
            bodies[-1] = support.event("run.cancelled", run, at=start + 42)
        for body in bodies:
            if target is None:
                body.pop("target", None)
            if n % 2:
                body["namespace"] = "team-b"
            if body["type"] == "run.llm_usage" and n % 4 == 1 and body["data"]["phase"] == "code":
                body["data"]["model"] = "gpt"
        if n % 6 == 0:  # a late call to a model the run had not used: counted under the status the run has
            late = support.event("run.llm_usage", run, at=start + 5 * HOUR, target=target, data={
                "provider": "openai", "model": "o-late", "input_tokens": 5, "output_tokens": 1, "latency_s": 0.2})
            if n % 2:
                late["namespace"] = "team-b"
            bodies.append(late)
        batch.extend(bodies)
    return batch


@pytest.fixture
def projected(make_settings: Callable[..., settings.Settings]) -> Iterator[store.Store]:
    """A store holding :func:`runs_over_days`, projected 7 events per batch (runs change status between batches)."""
    the_store = store.Store(make_settings(store_writer="thread", projector_enabled=False))
    the_store.open()
    batch = [events.CloudEvent.model_validate(body) for body in runs_over_days()]
    for start in range(0, len(batch), 50):
        the_store.submit(batch[start : start + 50]).result(timeout=60)
    projector = Projector(the_store.engine, batch_events=7)
    projector.run_until_caught_up()
    projector._release()
    yield the_store
    the_store.close()


def rows_of(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The new tables' rows without those whose count fell to zero (deltas leave them; a rebuild never writes them)."""
    with engine.connect() as conn:
        return {table.name: sorted(tuple(row) for row in conn.execute(sa.select(table).where(table.c["count"] != 0)))
                for table in NEW_TABLES}


def model_runs_from_events(the_store: store.Store, since: datetime, target: str | None,
                           scope: store.Scope) -> dict[tuple[str, str], dict[str | None, int]]:
    """Per (provider, model), status → runs whose first call to it lies from the hour of ``since`` on: from the
    calls in the log and the run records, nothing rolled up."""
    first: dict[tuple[str, str, str, str], tuple[float, str | None]] = {}
    with the_store.engine.connect() as conn:
        for ns, run_id, body in conn.execute(sa.select(tables.events.c.namespace, tables.events.c.run_id, tables.events.c.body)
                                             .where(tables.events.c.type == "run.llm_usage").order_by(tables.events.c.seq)):
            event = events.CloudEvent.model_validate_json(body)
            key = (ns, run_id, event.data["provider"], event.data["model"])
            first.setdefault(key, (event.time.timestamp(), event.target))
        statuses = {(ns, run): status for ns, run, status in conn.execute(sa.select(tables.runs.c.namespace, tables.runs.c.run_id,
                                                                                     tables.runs.c.status))}
    found: dict[tuple[str, str], dict[str | None, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for (ns, run_id, provider, model), (moment, call_target) in first.items():
        if rollups.hour_of(moment) < rollups.hour_of(since.timestamp()) or not scope.sees(ns, call_target):
            continue
        if target is not None and call_target != target:
            continue
        found[(provider, model)][statuses.get((ns, run_id))] += 1
    return {key: dict(value) for key, value in found.items()}


def finished_from_runs(the_store: store.Store, since: datetime, column: str, scope: store.Scope) -> list[tuple[str | None, str, int]]:
    """``finished_groups`` recomputed from the run records: finished runs created from the hour of ``since`` on."""
    floor = datetime.fromtimestamp(rollups.hour_of(since.timestamp()) * HOUR, UTC)
    counts: collections.Counter[tuple[str | None, str]] = collections.Counter()
    r = tables.runs
    with the_store.engine.connect() as conn:
        for value, status in conn.execute(sa.select(r.c[column], r.c.status).where(
                r.c.created_at >= floor, r.c.status.in_(list(projection.TERMINAL)), *scope.where(r.c.namespace, r.c.target))):
            counts[(value or None, status)] += 1
    return [(value, status, count) for (value, status), count in counts.items()]


SCOPES = (store.EVERYTHING, store.Scope(namespaces=frozenset({"team-b"})), store.Scope(targets=frozenset({"acme/b", "acme/c"})))
SINCES = tuple(support.BASE_TIME + timedelta(hours=hours, minutes=23) for hours in (-1, 7, 30, 61, 100))


def test_answers_from_the_new_levels_equal_a_recomputation_from_raw_rows(projected: store.Store) -> None:
    the_store = projected
    assert all(rows_of(the_store.engine).values())
    for scope in SCOPES:
        for since in SINCES:
            for target in (None, "acme/b"):
                facts = the_store.model_facts(since, target, scope)
                assert {key: group["runs"] for key, group in facts.items()} == model_runs_from_events(the_store, since, target, scope)
                for size in (HOUR, 6 * HOUR, 24 * HOUR):
                    start = datetime.fromtimestamp(int(since.timestamp()) // size * size, UTC)
                    assert the_store.trend_cells(start, size, target, scope) == the_store._trend_cells_of_runs(start, size, target, scope)
            for column in ("target", "error_type", "error_stage"):
                assert sorted(the_store.finished_groups(since, column, scope), key=str) == sorted(
                    finished_from_runs(the_store, since, column, scope), key=str), (scope, since, column)
    late = the_store.model_facts(SINCES[0], None)[("openai", "o-late")]["runs"]
    assert late == {"failed": 7, "running": 1}  # the late calls came after the runs ended (one still runs)


def answers(the_store: store.Store) -> list[Any]:
    since = SINCES[0]
    return [the_store.model_facts(since, None), the_store.model_facts(since, "acme/b"),
            the_store.trend_cells(datetime.fromtimestamp(int(since.timestamp()) // 86400 * 86400, UTC), 86400, None),
            *(sorted(the_store.finished_groups(since, column), key=str) for column in ("target", "error_type"))]


def test_rebuild_from_the_log_gives_the_incremental_rows(projected: store.Store) -> None:
    before = rows_of(projected.engine)
    projected.rebuild()
    assert rows_of(projected.engine) == before


def test_the_migration_fills_the_new_levels_as_the_projector_does(projected: store.Store) -> None:
    before, answered = rows_of(projected.engine), answers(projected)
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with projected.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    store.migrate(projected.engine)
    assert rows_of(projected.engine) == before
    assert answers(projected) == answered


def test_retention_lowers_no_total(projected: store.Store) -> None:
    answered = answers(projected)
    assert projected.sweep(support.BASE_TIME + timedelta(days=30)) > 0
    assert answers(projected) == answered
