"""The finished-run aggregates behind /metrics (``agg_runs``, ``agg_run_durations``) always equal a full recount
of the ``runs`` table, however late, out of order or duplicated the events arrive — on SQLite and PostgreSQL.

Runs change status and duration after they first finish (a later terminal event wins, a late ``run.started``
moves the start), so the writer applies deltas; each case below commits the events in several groups so
that the deltas, not only first insertions, are exercised. The recount is plain SQL over ``runs``.
"""

from __future__ import annotations

import random
from importlib import resources
from typing import Any

import prometheus_client
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import given
from hypothesis import strategies as st

from outrider.common import events
from outrider.control_plane import metrics as metrics_module
from outrider.control_plane import run_aggregates, tables
from outrider.control_plane import store as store_module
from outrider.control_plane.store.projector import Projector
from tests.control_plane import cp_support as support

FINISHED = ("succeeded", "failed", "cancelled")


def valid(raw: dict[str, Any]) -> events.CloudEvent:
    event, problems = events.validate_event(raw)
    assert event is not None, problems
    return event


def stored_aggregates(engine: sa.Engine) -> tuple[dict[tuple[str, str], int], dict[tuple[str, int], tuple[int, int]]]:
    with engine.connect() as conn:
        runs = {(t, s): int(n) for _, t, s, n in conn.execute(sa.select(tables.agg_runs)) if n}
        durations = {
            (t, int(b)): (int(n), int(total)) for _, t, b, n, total in conn.execute(sa.select(tables.agg_run_durations)) if n
        }
    return runs, durations


def recount(engine: sa.Engine) -> tuple[dict[tuple[str, str], int], dict[tuple[str, int], tuple[int, int]]]:
    """The same figures counted from scratch over ``runs`` in SQL (durations bucketed here from the rows)."""
    r = tables.runs
    with engine.connect() as conn:
        runs = {
            (t or "", s): int(n)
            for t, s, n in conn.execute(
                sa.select(r.c.target, r.c.status, sa.func.count()).where(r.c.status.in_(FINISHED)).group_by(r.c.target, r.c.status)
            )
        }
        durations: dict[tuple[str, int], tuple[int, int]] = {}
        rows = conn.execute(
            sa.select(r.c.target, r.c.duration_seconds).where(r.c.status.in_(FINISHED), r.c.duration_seconds.is_not(None))
        )
        for target, duration in rows:
            key = (target or "", run_aggregates.bucket(duration))
            n, total = durations.get(key, (0, 0))
            durations[key] = (n + 1, total + run_aggregates.micros(duration))
    return runs, durations


def messy_history() -> list[dict[str, Any]]:
    """Runs whose status or duration changes after they first finish, plus plain ones and one without a target."""
    history: list[dict[str, Any]] = []
    for index in range(6):
        history += support.lifecycle(f"plain-{index}", target=f"acme/t{index % 3}", fail=index % 2 == 1, start=index * 100)
    # Fails first, then a later run.succeeded wins: failed -> succeeded, duration 50 s -> 300 s.
    history += [
        support.event("run.created", "flip", at=0, target="acme/t0"),
        support.event("run.started", "flip", at=10, target="acme/t0"),
        support.event("run.failed", "flip", at=60, target="acme/t0", data={"error_type": "E", "message": "boom"}),
        support.event("run.succeeded", "flip", at=310, target="acme/t0"),
    ]
    # Finishes before its run.started arrives: the duration is first measured from created_at, then from started_at.
    history += [
        support.event("run.created", "late-start", at=0, target="acme/t1"),
        support.event("run.succeeded", "late-start", at=4000, target="acme/t1"),
        support.event("run.started", "late-start", at=3990, target="acme/t1"),
    ]
    # Cancelled, then a run.failed with a later time: cancelled -> failed, other histogram bucket.
    history += [
        support.event("run.created", "c2f", at=0, target="acme/t2"),
        support.event("run.cancelled", "c2f", at=20, target="acme/t2"),
        support.event("run.failed", "c2f", at=90000, target="acme/t2", data={"message": "late"}),
    ]
    # No target at all.
    history += [
        support.event("run.created", "anon", at=0, target=None),
        support.event("run.succeeded", "anon", at=7, target=None),
    ]
    return history


def commit_in_groups(the_store: store_module.Store, raws: list[dict[str, Any]], groups: int, rng: random.Random,
                     projector: Projector) -> None:
    """Commit ``raws`` (with duplicates) in ``groups`` separate transactions, each through the writer's own path,
    each projected (in batches of a few events) before the next."""
    items = [valid(raw) for raw in raws]
    items += [rng.choice(items) for _ in range(len(items) // 3)]  # duplicates: never folded twice
    rng.shuffle(items)
    size = -(-len(items) // groups)
    for start in range(0, len(items), size):
        submission = store_module.Submission(items[start : start + size], store_module.concurrent.futures.Future())
        the_store._commit_group([submission])
        submission.future.result(timeout=0)
        projector.run_until_caught_up()


def test_aggregates_equal_a_recount_after_out_of_order_and_duplicate_events(make_settings) -> None:  # type: ignore[no-untyped-def]
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)  # no writer thread: groups are committed by hand, deterministically
    projector = Projector(the_store.engine, batch_events=7)
    try:
        history = messy_history()
        for seed in range(3):
            rng = random.Random(seed)
            renamed = [{**raw, "id": f"{raw['id']}-s{seed}", "runid": f"{raw['runid']}-s{seed}"} for raw in history]
            commit_in_groups(the_store, renamed, groups=2 + seed * 3, rng=rng, projector=projector)
            assert stored_aggregates(the_store.engine) == recount(the_store.engine)
        runs, durations = recount(the_store.engine)
        assert runs[("acme/t0", "succeeded")] >= 3 and ("", "succeeded") in runs
        assert ("acme/t2", "cancelled") not in runs  # every c2f run ended failed: its cancelled count went back to 0
        assert ("acme/t1", run_aggregates.bucket(10.0)) in durations  # late-start: 10 s, not 4000 s
        assert ("acme/t1", run_aggregates.bucket(4000.0)) not in durations
    finally:
        the_store.engine.dispose()


def test_metrics_report_the_aggregates(make_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_settings())
    assert server.client.post("/v1/events", json=messy_history(), headers=support.BATCH).status_code == 202
    runs, durations = recount(server.app.state.store.engine)
    value = server.registry.get_sample_value
    for (target, status), count in runs.items():
        assert value("outrider_runs_total", {"namespace": "default", "target": target, "status": status}) == count
    assert value("outrider_runs_total", {"namespace": "default", "target": "acme/t2", "status": "cancelled"}) is None  # zero rows are not shown
    for target in {t for t, _ in durations}:
        cells = {b: nt for (t, b), nt in durations.items() if t == target}
        assert value("outrider_run_duration_seconds_count", {"namespace": "default", "target": target}) == sum(n for n, _ in cells.values())
        assert value("outrider_run_duration_seconds_sum", {"namespace": "default", "target": target}) == sum(t for _, t in cells.values()) / 1e6
        for index, bound in enumerate(metrics_module.DURATION_BUCKETS):
            expected = sum(n for b, (n, _) in cells.items() if b <= index)
            assert value("outrider_run_duration_seconds_bucket", {"namespace": "default", "target": target, "le": metrics_module._bound(bound)}) == expected


def test_the_migration_backfills_existing_runs(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A store that already holds runs when 0005 runs gets the aggregates of those runs."""
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)
    try:
        commit_in_groups(the_store, messy_history(), groups=4, rng=random.Random(7), projector=Projector(the_store.engine))
        expected = recount(the_store.engine)
        config = Config()
        config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
        with the_store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
            command.upgrade(config, "head")
        assert stored_aggregates(the_store.engine) == expected
    finally:
        the_store.engine.dispose()


def test_exposition_equals_generate_latest(make_settings, start_server) -> None:  # type: ignore[no-untyped-def]
    """/metrics writes the store's families as text itself; byte for byte what prometheus_client would write,
    including label values that need escaping and values in exponent notation."""
    server = start_server(make_settings())
    odd = 'we"ird\\model\nname'
    batch = messy_history() + [
        support.event("run.llm_usage", "plain-0", at=5, target="acme/t0", data={
            "provider": "p", "model": odd, "input_tokens": 12_345_678_901, "output_tokens": 3, "cost_usd": 987654.5,
        }),
        support.event("vendor.custom", None, target=None),
    ]
    assert server.client.post("/v1/events", json=batch, headers=support.BATCH).status_code == 202
    server.caught_up()
    metrics = server.app.state.metrics
    # The process and GC collectors' figures move between two calls: compare with them left out.
    for collector in [c for c in metrics.registry.collectors if type(c).__name__ in ("ProcessCollector", "GCCollector")]:
        metrics.registry.unregister(collector)
    ours = metrics.exposition()
    assert ours == prometheus_client.generate_latest(metrics.registry)
    assert b'model="we\\"ird\\\\model\\nname"' in ours and b"outrider_run_duration_seconds_bucket{le=\"+Inf\"" in ours
    served = server.anonymous.get("/metrics")
    assert served.status_code == 200 and "outrider_runs_total{" in served.text


_label_values = st.text(alphabet=st.sampled_from('ab"\\\n-é'), max_size=4)
_values = st.one_of(st.integers(min_value=0, max_value=10**13), st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 0, 1, 1.0]))


@given(st.lists(st.tuples(st.sampled_from(["x", "y"]), st.sampled_from(["a", "b"]), _label_values, _label_values, _values), max_size=30))
def test_family_text_is_what_generate_latest_writes(samples: list[tuple[str, str, str, str, Any]]) -> None:
    """``metrics.Family.text`` (its caches of rendered label pairs and integers) against prometheus_client itself:
    repeated and escaped label values, first pair shared or not, -0.0 next to 0, exponent notation."""
    family = metrics_module.Family("outrider_test", "gauge", 'help with "quotes" \\ and\nlines')
    seen = set()
    for first, second, value_a, value_b, value in samples:
        labels = (("first", first + value_a), ("second", second), ("third", value_b))
        if labels not in seen:  # one sample per label set, as in a real family
            seen.add(labels)
            family.samples.append(("outrider_test", labels, value))
    family.samples.append(("outrider_test", (), -0.0))

    class One:
        def collect(self) -> list[Any]:
            return [family.metric()]

    assert family.text().encode() == prometheus_client.generate_latest(One())  # type: ignore[arg-type]
