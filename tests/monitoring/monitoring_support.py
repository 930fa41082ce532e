"""Helpers for the monitoring tests: where the rules and dashboard live, running promtool, and the set of
metric names Outrider really exports (read from the code and docs/metrics.md, so a rule or panel that names
a metric nobody exports fails here instead of showing "No data" forever)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import require_executable

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "outrider.rules.yaml"
RULE_TESTS = ROOT / "monitoring" / "rules" / "tests"
DASHBOARD = ROOT / "monitoring" / "dashboards" / "outrider-overview.json"
RUNBOOKS = ROOT / "docs" / "operations" / "runbooks"
RUNBOOK_URL = "https://github.com/outrider-dev/outrider/blob/main/docs/operations/runbooks/{}.md"

#: Series Prometheus itself makes for every scrape target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
METRIC = re.compile(r"\boutrider_[a-z0-9_]*[a-z0-9]\b")


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = require_executable("promtool")
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def exported_metrics() -> set[str]:
    """Every metric name the code defines or docs/metrics.md documents, with the suffixes Prometheus adds
    (counters are exposed as ``<name>_total``; histograms as ``_bucket``, ``_sum`` and ``_count``)."""
    names: set[str] = set()
    sources = list((ROOT / "outrider").rglob("*.py"))
    docs = ROOT / "docs" / "metrics.md"
    if docs.exists():
        sources.append(docs)
    for path in sources:
        text = path.read_text()
        if path.suffix == ".py":
            names.update(re.findall(r"[\"'](outrider_[a-z0-9_]+)[\"']", text))
        else:
            names.update(METRIC.findall(text))
    expanded = set(names)
    for name in names:
        expanded.add(name if name.endswith("_total") else name + "_total")
        expanded.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return expanded


def metric_names(expr: str) -> set[str]:
    """The Outrider metric names an expression reads."""
    return set(METRIC.findall(expr))
