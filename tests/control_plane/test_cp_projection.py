"""The run projection on its own (pure, no server): any order and repetition of the same events folds to the
same record, and each rule of docs/api.md holds."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from outrider.common import events
from outrider.control_plane import analytics, projection, schemas
from tests.control_plane import cp_support as support


def parsed(raw: list[dict[str, Any]]) -> list[events.CloudEvent]:
    out = []
    for item in raw:
        event, problems = events.validate_event(item)
        assert event is not None, problems
        out.append(event)
    return out


def folded(items: list[events.CloudEvent], run_id: str = "r") -> dict[str, Any]:
    state = projection.empty_state()
    for item in items:
        state = projection.fold(state, item)
    record = projection.record(run_id, state)
    schemas.RunRecord.model_validate(record)  # the API model accepts every record
    return record


def messy_lifecycle() -> list[events.CloudEvent]:
    raw = support.lifecycle("r", fail=True)
    raw += [
        support.event("run.succeeded", "r", at=62),  # same time as run.failed: the tie is broken by (source, id)
        support.event("pr.merged", "r", at=70, data={"number": 7, "url": "https://example.test/pr/7"}),
        support.event("pr.created", "r", at=69, data={"number": 7, "url": "https://example.test/pr/7"}),
        support.event("run.llm_usage", "r", at=5, data={"provider": "openai", "model": "gpt", "input_tokens": 1, "output_tokens": 2}),
        support.event("run.stage.started", "r", at=2.5, data={"stage": "plan"}),
        support.event("run.stage.completed", "r", at=11, data={"stage": "plan"}),
        support.event("run.retry", "r", at=20),
    ]
    return parsed(raw)


@pytest.mark.parametrize("seed", range(25))
def test_any_order_gives_the_same_record(seed: int) -> None:
    items = messy_lifecycle()
    expected = folded(items)
    rng = random.Random(seed)
    shuffled = items[:]
    rng.shuffle(shuffled)
    assert folded(shuffled) == expected


def test_state_is_plain_json_and_survives_a_round_trip() -> None:
    state = projection.empty_state()
    items = messy_lifecycle()
    for item in items[:7]:
        state = projection.fold(state, item)
    state = json.loads(json.dumps(state))
    for item in items[7:]:
        state = projection.fold(state, item)
    assert projection.record("r", state) == folded(items)


def test_fold_does_not_modify_its_input() -> None:
    state = projection.empty_state()
    before = json.dumps(state)
    projection.fold(state, parsed([support.event("run.created", "r")])[0])
    assert json.dumps(state) == before


def test_status_rank_and_tie_break() -> None:
    created, admitted, started = parsed([
        support.event("run.created", "r", at=10),
        support.event("run.admitted", "r", at=0),  # earlier in time, but later in the lifecycle
        support.event("run.started", "r", at=5),
    ])
    assert folded([created, admitted])["status"] == "admitted"
    assert folded([started, created, admitted])["status"] == "running"
    ok, bad = parsed([
        support.event("run.succeeded", "r", at=30, id="b"),
        support.event("run.failed", "r", at=30, id="a", data={"error_type": "E"}),
    ])
    record = folded([bad, ok, started])
    assert record["status"] == "succeeded"  # same time and source: the larger id wins
    assert record["error_summary"] is None
    assert any("several terminal events" in note for note in record["metrics"]["notes"])


def test_terminal_before_start_is_noted() -> None:
    record = folded(parsed([
        support.event("run.created", "r", at=0),
        support.event("run.started", "r", at=50),
        support.event("run.succeeded", "r", at=40),
    ]))
    assert record["status"] == "succeeded"
    assert record["duration_seconds"] is None
    assert "the terminal event is earlier than the start; duration unknown" in record["metrics"]["notes"]


def test_missing_created_and_started_fall_back() -> None:
    record = folded(parsed([
        support.event("run.progress", "r", at=7, data={"stage": "code", "iteration": 1}),
        support.event("run.log", "r", at=3, data={"level": "info", "message": "hello"}),
        support.event("run.cancelled", "r", at=20),
    ]))
    assert record["created_at"] == support.BASE_TIME.replace(second=3)
    assert record["started_at"] == support.BASE_TIME.replace(second=7)
    assert record["status"] == "cancelled" and record["duration_seconds"] == 13.0
    assert record["metrics"]["notes"] == ["no run.created event received; created_at is the earliest event's time"]
    assert record["metrics"]["phase_timings"] == {"code": {"started_at": None, "duration_seconds": None}}


def test_unknown_and_non_run_events_change_nothing() -> None:
    base = folded(parsed([support.event("run.created", "r")]))
    extra = parsed([
        support.event("run.created", "r"),
        support.event("run.teleported", "r", at=1),
        support.event("target.breaker.tripped", None, at=2),
    ])
    assert folded(extra) == {**base, "created_at": base["created_at"]}


def test_costs_sum_exactly_and_null_when_never_priced() -> None:
    priced = [
        support.event("run.llm_usage", "r", at=i, data={"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.1})
        for i in range(10)
    ]
    unpriced = [support.event("run.llm_usage", "r", at=20, data={"provider": "p", "model": "free", "phase": "x", "input_tokens": 5, "output_tokens": 0})]
    record = folded(parsed(priced + unpriced))
    assert record["llm_usage"]["total"]["cost_usd"] == 1.0  # exact: sums are in 1e-9 USD integers
    assert record["llm_usage"]["by_model"]["p/free"]["cost_usd"] is None
    assert record["llm_usage"]["by_phase"]["unknown"]["calls"] == 10
    assert record["llm_usage"]["total"]["input_tokens"] == 15


@pytest.mark.parametrize(
    ("error_type", "stage", "message", "expected"),
    [
        ("TimeoutError", "test", "took too long\nmore", "TimeoutError in test: took too long"),
        (None, None, None, "Error"),
        ("E", None, "  \n", "E"),
        ("E", "s", "x" * 500, "E in s: " + "x" * 191 + "…"),
    ],
)
def test_error_summary(error_type: str | None, stage: str | None, message: str | None, expected: str) -> None:
    summary = projection.error_summary(error_type, stage, message)
    assert summary == expected
    assert len(summary) <= projection.SUMMARY_MAX


def test_percentile_and_ratio_are_zero_safe() -> None:
    assert analytics.percentile([], 50) is None
    assert analytics.percentile([3.0], 95) == 3.0
    assert analytics.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert analytics.ratio(1, 0) is None


KINDS = [
    ("run.created", {}),
    ("run.admitted", {}),
    ("run.started", {}),
    ("run.stage.started", {"stage": "plan"}),
    ("run.stage.completed", {"stage": "plan"}),
    ("run.stage.started", {"stage": "code"}),
    ("run.stage.completed", {"stage": "code"}),
    ("run.progress", {"stage": "code", "iteration": 1}),
    ("run.llm_usage", {"provider": "p", "model": "m", "phase": "code", "input_tokens": 3, "output_tokens": 2, "cost_usd": 0.3}),
    ("run.llm_usage", {"provider": "p", "model": "n", "input_tokens": 1, "output_tokens": 1}),
    ("run.retry", {}),
    ("run.log", {"level": "info", "message": "m"}),
    ("run.succeeded", {}),
    ("run.failed", {"error_type": "E", "stage": "code", "message": "bad\nworse"}),
    ("run.cancelled", {}),
    ("pr.created", {"number": 1, "url": "https://example.test/1"}),
    ("pr.merged", {"number": 1, "url": "https://example.test/1b"}),
    ("run.unknown_future_type", {"x": 1}),
]


def test_fold_is_order_independent_for_any_event_set() -> None:
    """Property: for random sets of events (times with ties, several sources), every permutation folds alike."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    one = st.tuples(st.integers(0, len(KINDS) - 1), st.integers(0, 5), st.sampled_from(["/a", "/b"]), st.sampled_from(["t1", "t2", None]))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(one, min_size=1, max_size=14), st.randoms(use_true_random=False))
    def check(specs: list[tuple[int, int, str, str | None]], rng: random.Random) -> None:
        raw = [
            support.event(KINDS[k][0], "r", at=float(t), data=KINDS[k][1], source=src, target=tgt, id=f"e{n}")
            for n, (k, t, src, tgt) in enumerate(specs)
        ]
        items = parsed(raw)
        expected = folded(items)
        shuffled = items[:]
        rng.shuffle(shuffled)
        assert folded(shuffled) == expected

    check()
