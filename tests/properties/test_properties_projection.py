"""Property: any order and any duplication of a run's events yields the same run record.

Two levels, both with hypothesis-generated runs (every event type that moves a record, unknown types,
few distinct times and sources so ties and tie-breaks are exercised):

- the pure fold (``projection``): the same set of events folded in two different orders gives the same
  state and the same record;
- the real store (``store.Store`` on a SQLite file, group-commit writer and all): the events submitted
  in a shuffled order, split over several requests, with duplicates inside a request and across
  requests, give exactly the record of the deduplicated events folded in time order — and a second run
  with the same events in another order and duplication gives it too.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider.common import events
from outrider.control_plane import projection, store
from outrider.control_plane import settings as cp_settings

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STAGES = ["plan", "code", "test"]

data_for = {
    "run.created": st.just({}),
    "run.admitted": st.just({}),
    "run.started": st.just({}),
    "run.retry": st.just({}),
    "run.succeeded": st.just({}),
    "run.cancelled": st.just({}),
    "run.stage.started": st.builds(lambda s: {"stage": s}, st.sampled_from(STAGES)),
    "run.stage.completed": st.builds(lambda s: {"stage": s}, st.sampled_from(STAGES)),
    "run.progress": st.builds(lambda s, i: {"stage": s, "iteration": i}, st.sampled_from(STAGES), st.integers(0, 9)),
    "run.log": st.builds(lambda m: {"level": "info", "message": m}, st.text(max_size=20)),
    "run.llm_usage": st.builds(
        lambda phase, model, i, o, cost: {
            "provider": "anthropic",
            "model": model,
            "phase": phase,
            "input_tokens": i,
            "output_tokens": o,
            "cost_usd": cost,
        },
        st.sampled_from([None, *STAGES]),
        st.sampled_from(["m1", "m2"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.one_of(st.none(), st.floats(0, 5, allow_nan=False, allow_infinity=False)),
    ),
    "run.failed": st.builds(
        lambda t, s, m: {"error_type": t, "stage": s, "message": m},
        st.sampled_from([None, "TestFailure", "Timeout"]),
        st.sampled_from([None, *STAGES]),
        st.one_of(st.none(), st.text(max_size=30)),
    ),
    "pr.created": st.builds(lambda n: {"number": n, "url": f"https://example.invalid/pr/{n}"}, st.integers(1, 3)),
    "pr.merged": st.builds(lambda n: {"number": n, "url": f"https://example.invalid/pr/{n}"}, st.integers(1, 3)),
    "vendor.custom": st.just({"anything": 1}),  # unknown type: stored, changes no record
}


@st.composite
def run_event_specs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A run's distinct events, without ids yet: type, data, time (few distinct values), source, target."""
    count = draw(st.integers(1, 25))
    specs = []
    for _ in range(count):
        kind = draw(st.sampled_from(sorted(data_for)))
        specs.append(
            {
                "type": kind,
                "data": draw(data_for[kind]),
                "time": BASE + timedelta(seconds=draw(st.integers(0, 6))),
                "source": draw(st.sampled_from(["/workers/a", "/workers/b", "/operator"])),
                "target": draw(st.sampled_from(["org/one", "org/two"])),
            }
        )
    return specs


def build(specs: list[dict[str, Any]], run_id: str) -> list[events.CloudEvent]:
    built = []
    for n, spec in enumerate(specs):
        raw = {
            "specversion": "1.0",
            "id": f"{run_id}-{n}",
            "source": spec["source"],
            "type": spec["type"],
            "time": spec["time"].isoformat(),
            "target": spec["target"],
            "runid": run_id,
            "data": spec["data"],
        }
        event, problems = events.validate_event(raw)
        assert event is not None, problems
        built.append(event)
    return built


def fold_all(items: list[events.CloudEvent]) -> projection.RunState:
    state = projection.empty_state()
    for event in items:
        state = projection.fold(state, event)
    return state


@settings(max_examples=300, deadline=None)
@given(specs=run_event_specs(), order=st.randoms(use_true_random=False))
def test_pure_fold_is_order_independent(specs: list[dict[str, Any]], order: Any) -> None:
    items = build(specs, "pure-run")
    shuffled = list(items)
    order.shuffle(shuffled)
    first, second = fold_all(items), fold_all(shuffled)
    assert first == second
    assert projection.record("pure-run", first) == projection.record("pure-run", second)


@settings(max_examples=300, deadline=None)
@given(specs=run_event_specs())
def test_query_columns_are_the_records_fields(specs: list[dict[str, Any]]) -> None:
    """``projection.columns`` computes the runs table's columns without building the record: same values."""
    state = fold_all(build(specs, "cols-run"))
    record = projection.record("cols-run", state)
    usage = list(state["usage"]["model"].values())
    priced = sum(values[3] for values in usage)
    expected = {name: record[name] for name in (
        "namespace", "run_id", "target", "status", "created_at", "started_at", "completed_at", "duration_seconds",
        "error_summary", "error_type", "error_stage", "pr_count", "event_count", "last_event_at",
    )} | {
        "input_tokens": sum(values[0] for values in usage),
        "output_tokens": sum(values[1] for values in usage),
        "cost_nano_usd": sum(values[2] for values in usage) if priced else None,
        "llm_calls": state["llm_calls"],
    }
    if state["event_count"]:
        assert projection.columns("cols-run", state) == expected


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[store.Store]:
    """One real store (SQLite file, migrations, group-commit writer) for the module's examples."""
    path: Path = tmp_path_factory.mktemp("properties") / "outrider.db"
    the_store = store.Store(cp_settings.Settings(database_url=f"sqlite:///{path}", api_tokens="x"))
    the_store.open()
    yield the_store
    the_store.close()


def deliver(the_store: store.Store, items: list[events.CloudEvent], order: Any) -> None:
    """Submit ``items`` shuffled, with duplicates, split into several requests; wait for every commit."""
    copies = list(items) + [order.choice(items) for _ in range(order.randint(0, len(items)))]
    order.shuffle(copies)
    cuts = sorted(order.sample(range(1, len(copies)), k=min(3, len(copies) - 1))) if len(copies) > 1 else []
    futures = [the_store.submit(copies[a:b]) for a, b in itertools.pairwise([0, *cuts, len(copies)])]
    positions = [future.result(timeout=30)[2] for future in futures]
    the_store.wait_projected(max(positions))  # records are projections: read them once they cover these events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=run_event_specs(), order=st.randoms(use_true_random=False))
def test_store_record_ignores_order_and_duplicates(
    real_store: store.Store, specs: list[dict[str, Any]], order: Any
) -> None:
    run_a, run_b = f"prop-{uuid.uuid4().hex}", f"prop-{uuid.uuid4().hex}"
    items_a, items_b = build(specs, run_a), build(specs, run_b)
    deliver(real_store, items_a, order)
    deliver(real_store, items_b, order)

    expected = projection.record(run_a, fold_all(sorted(items_a, key=lambda e: (e.time, e.source, e.id))))
    if expected["event_count"] == 0:  # only unknown types: they make no run record at all
        assert real_store.get_run(run_a) is None
        return
    stored_a, stored_b = real_store.get_run(run_a), real_store.get_run(run_b)
    assert stored_a == expected
    assert stored_b is not None
    assert {**stored_b, "run_id": run_a} == expected
