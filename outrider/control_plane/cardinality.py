"""Bounded metric label values: ``target``, ``namespace`` and ``model`` come from clients, so ``/metrics`` keeps a
known set of them and folds the rest into ``other``.

Why: one ingest request with 5,000 made-up targets once took ``/metrics`` from 127 to 5,127 series; every
Prometheus scraping it would keep them for weeks. Kept, per scrape:

- targets (``namespace``/``target`` pairs): every Target the operator reported (``target.status``), then the
  busiest others by finished runs and tokens, up to ``metrics_max_targets`` (default 200) in all;
- models: the busiest by tokens, up to ``metrics_max_models`` (default 50).

A Target the operator reported deleted (``target.deleted``) loses its own series: its counters fold into
``other`` too, so deleted Targets do not pile up in Prometheus.

Everything else is summed under ``namespace="other", target="other"`` / ``model="other"``, so totals stay
exact (a counter never loses what it counted); only the split is coarser.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from typing import Any

OTHER = "other"
#: The numeric columns of each aggregate, summed when rows fold into ``other``.
NUMBERS = {
    "runs": ("count",),
    "llm": ("input_tokens", "output_tokens", "cost_nano_usd"),
    "prs": ("created",),
    "durations": ("count", "sum_micros"),
}


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return (row.get("namespace") or "default", row.get("target") or "")


def allowed_targets(aggregates: dict[str, list[dict[str, Any]]], known: Iterable[tuple[str, str]], limit: int,
                    deleted: Collection[tuple[str, str]] = ()) -> set[tuple[str, str]]:
    """The (namespace, target) pairs that keep their own series: the known ones, then the busiest, ``limit`` in all;
    never a ``deleted`` Target."""
    allowed = set([key for key in dict.fromkeys(known) if key not in deleted][:limit])
    activity: collections.Counter[tuple[str, str]] = collections.Counter()
    for row in aggregates.get("runs", []):
        activity[_key(row)] += int(row["count"])
    for row in aggregates.get("llm", []):
        activity[_key(row)] += int(row["input_tokens"]) + int(row["output_tokens"])
    for row in aggregates.get("prs", []):
        activity[_key(row)] += int(row["created"])
    for key, _ in sorted(activity.items(), key=lambda item: (-item[1], item[0])):
        if len(allowed) >= limit:
            break
        if key not in deleted:
            allowed.add(key)
    allowed.add(("default", ""))  # events that named no target: one series, never a client's value
    return allowed


def allowed_models(aggregates: dict[str, list[dict[str, Any]]], limit: int) -> set[str]:
    tokens: collections.Counter[str] = collections.Counter()
    for row in aggregates.get("llm", []):
        tokens[row["model"]] += int(row["input_tokens"]) + int(row["output_tokens"])
    return {model for model, _ in sorted(tokens.items(), key=lambda item: (-item[1], item[0]))[:limit]}


def bound(aggregates: dict[str, list[dict[str, Any]]], known: Iterable[tuple[str, str]], *, max_targets: int,
          max_models: int, deleted: Collection[tuple[str, str]] = ()) -> dict[str, list[dict[str, Any]]]:
    """``aggregates`` with targets and models outside the kept sets, and deleted Targets, folded into ``other``
    (sums exact: a counter never loses what it counted)."""
    targets = allowed_targets(aggregates, known, max_targets, deleted)
    models = allowed_models(aggregates, max_models)
    out = dict(aggregates)
    for name, numbers in NUMBERS.items():
        folded: dict[tuple[Any, ...], dict[str, Any]] = {}
        labels_of: dict[tuple[str, ...], tuple[str, ...]] = {}  # a row's columns → its label columns, in name order
        copied: set[tuple[Any, ...]] = set()  # keys whose row is our own copy (made when a second row folds into it)
        for row in aggregates.get(name, []):
            columns = tuple(row)
            labels = labels_of.get(columns)
            if labels is None:
                labels = labels_of[columns] = tuple(sorted(k for k in columns if k not in numbers))
            other_target = _key(row) not in targets
            other_model = "model" in row and row["model"] not in models
            if other_target or other_model:
                row = dict(row)
                if other_target:
                    row["namespace"], row["target"] = OTHER, OTHER
                if other_model:
                    row["model"] = OTHER
            key = (labels, *(row[k] for k in labels))
            same = folded.get(key)
            if same is None:
                folded[key] = row  # the caller's row itself until another folds into it: copied then
            else:
                if key not in copied:
                    same = folded[key] = dict(same)
                    copied.add(key)
                for number in numbers:
                    same[number] = int(same[number]) + int(row[number])
        out[name] = list(folded.values())
    return out
