"""``bench.targets.projection``: the sustained target is judged against the baseline measured in the same run, and
against the fixed figure of 2026-11-26 only when that baseline could not be measured (saying why)."""

from __future__ import annotations

import pytest

from bench import targets


def _sustained_check(found: dict) -> dict:
    return next(c for c in targets.projection(found, [], "batch100") if "accepted and projected" in c["name"])


def test_the_same_run_baseline_is_the_one_judged() -> None:
    check = _sustained_check({"sqlite": {"sustained_per_s": 30_000.0,
                                         "before_log": {"commit": "d754dbc", "events_per_s": {"median": 16_000.0}}}})
    assert "same run" in check["name"]
    assert check["measured"] == pytest.approx(30_000 / 16_000) and check["met"] is False
    # the fixed figure is reported beside it: 30,000 / 17,427 would not be the judged figure
    assert "17,427" in check["note"] and f"{30_000 / targets.PREVIOUS_SQLITE_BATCHED:.2f}×" in check["note"]


def test_without_the_same_run_baseline_the_fixed_figure_is_judged_and_the_reason_given() -> None:
    check = _sustained_check({"sqlite": {"sustained_per_s": 34_854.0,
                                         "before_log": {"skipped": "git archive d754dbc0996e failed: not a tree"}}})
    assert "fixed" in check["name"]
    assert check["measured"] == pytest.approx(34_854 / 17_427) and check["met"] is True
    assert "not a tree" in check["note"]
