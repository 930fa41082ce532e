"""Property: whatever the order, grouping and duplication of events, the run aggregates behind /metrics
(``agg_runs``, ``agg_run_durations``) equal a recount of the ``runs`` table.

Hypothesis draws several runs' events (every type that moves a record, few distinct times so terminal
events tie and flip statuses); they are submitted shuffled, with duplicates, split over several requests,
to one real store (SQLite file, group-commit writer), each request committed before the next. After every example the whole tables are compared
with a recount, so deltas applied on top of earlier examples' rows are checked too.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outrider.control_plane import settings as cp_settings
from outrider.control_plane import store
from tests.control_plane.test_cp_run_aggregates import recount, stored_aggregates
from tests.properties.test_properties_projection import build, run_event_specs


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[store.Store]:
    path: Path = tmp_path_factory.mktemp("aggregates") / "outrider.db"
    the_store = store.Store(cp_settings.Settings(database_url=f"sqlite:///{path}", api_tokens="x"))
    the_store.open()
    yield the_store
    the_store.close()


def deliver_one_by_one(the_store: store.Store, items: list[Any], order: Any) -> None:
    """Shuffled, with duplicates, in up to five requests each committed before the next is sent: every
    request is its own group, so a run folded in one group is updated (a delta) by the next."""
    copies = list(items) + [order.choice(items) for _ in range(order.randint(0, len(items)))]
    order.shuffle(copies)
    cuts = sorted(order.sample(range(1, len(copies)), k=min(4, len(copies) - 1))) if len(copies) > 1 else []
    for start, end in itertools.pairwise([0, *cuts, len(copies)]):
        position = the_store.submit(copies[start:end]).result(timeout=30)[2]
        the_store.wait_projected(position)  # each request projected before the next: a delta per request


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(run_event_specs(), min_size=1, max_size=4), order=st.randoms(use_true_random=False))
def test_run_aggregates_equal_a_recount(real_store: store.Store, runs: list[list[dict[str, Any]]], order: Any) -> None:
    items = [event for specs in runs for event in build(specs, f"agg-{uuid.uuid4().hex}")]
    deliver_one_by_one(real_store, items, order)
    assert stored_aggregates(real_store.engine) == recount(real_store.engine)
