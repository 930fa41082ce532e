"""The Grafana dashboard: the structure Grafana needs (data-source and target variables, the overview panels,
a target-detail row), every query parses as PromQL (promtool, through a throwaway rules file) and names only
metrics Outrider exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import monitoring_support as support

#: Grafana's own variables, replaced by values PromQL accepts so promtool can parse the expressions.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$target": ".*"}


def dashboard() -> dict[str, Any]:
    return json.loads(support.DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(all_panels(panel.get("panels", [])))
    return found


def expressions() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in all_panels(dashboard()["panels"]) for target in panel.get("targets", [])]


def test_structure() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] == "outrider-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["target"]["type"] == "query" and variables["target"]["multi"] and variables["target"]["includeAll"]
    panels = all_panels(board["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for needed in ("status", "health", "open prs", "success rate", "p50 / p95", "tokens", "cost", "breaker"):
        assert needed in titles, f"no panel about {needed}"
    rows = [p for p in panels if p["type"] == "row" and p.get("repeat") == "target"]
    assert len(rows) == 1, "the target-detail row repeats per target"


def test_every_query_names_exported_metrics_only() -> None:
    exported = support.exported_metrics()
    board = dashboard()
    queries = expressions() + [("variable target", board["templating"]["list"][1]["definition"])]
    for title, expr in queries:
        names = support.metric_names(expr)
        assert names or "up{" in expr, f"{title}: reads no Outrider metric"
        assert names - exported == set(), f"{title}: names metrics nobody exports: {names - exported}"


@pytest.mark.prometheus
def test_every_query_parses(tmp_path: Path) -> None:
    records = []
    for index, (title, expr) in enumerate(expressions()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: unknown Grafana variable in {expr}"
        records.append({"record": f"dashboard:panel_{index}", "expr": expr})
    rules = tmp_path / "dashboard.rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = support.promtool("check", "rules", rules)
    assert result.returncode == 0, result.stdout + result.stderr


def test_legends_name_labels_that_exist() -> None:
    for panel in all_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
                assert re.search(rf"\b(by|without) \([^)]*\b{label}\b", target["expr"]) or label in target["expr"], (
                    f"{panel['title']}: legend uses {label}, which the query does not keep"
                )
