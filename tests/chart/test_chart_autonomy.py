"""The autonomy ConfigMap on upgrade: the more cautious state wins. Offline rendering has no cluster for
`lookup`, so the decision ("outrider.autonomyData" in _helpers.tpl) is rendered by Helm's own engine in a
throwaway chart that feeds it each combination of values and live ConfigMap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart import chart_support as support

ON = {"enabled": True, "mode": "hold", "reason": ""}
OFF_VALUES = {"enabled": False, "mode": "drain", "reason": "incident 7"}


def live(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "outrider-autonomy"}, "data": data}


CASES = [
    # (values, live ConfigMap or {}, expected data)
    (ON, {}, {"enabled": "true", "mode": "hold", "reason": ""}),  # first install
    (OFF_VALUES, {}, {"enabled": "false", "mode": "drain", "reason": "incident 7"}),
    (ON, live(enabled="false", mode="hold", reason="paused by ann"),  # a kubectl pause survives an upgrade
     {"enabled": "false", "mode": "hold", "reason": "paused by ann"}),
    (ON, live(enabled="false", mode="drain", reason="stop"), {"enabled": "false", "mode": "drain", "reason": "stop"}),
    (ON, live(enabled="garbage"), {"enabled": "garbage"}),  # invalid stays invalid: the operator fails closed
    (ON, live(enabled="true", mode="hold", reason="old"), {"enabled": "true", "mode": "hold", "reason": ""}),
    (OFF_VALUES, live(enabled="true", mode="hold", reason=""),  # pausing through values always applies
     {"enabled": "false", "mode": "drain", "reason": "incident 7"}),
]


@pytest.fixture(scope="module")
def decision_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("autonomy") / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.0.1\n")
    shutil.copy(support.CHART / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "templates" / "cases.yaml").write_text(
        "{{- range $i, $case := .Values.cases }}\n---\n"
        'case: {{ $i }}\n'
        'data: {{ include "outrider.autonomyData" (dict "autonomy" $case.autonomy "live" $case.live) | fromYaml | toJson }}\n'
        "{{- end }}\n")
    return chart


def test_the_more_cautious_state_wins(decision_chart: Path) -> None:
    values = {"cases": [{"autonomy": v, "live": lv} for v, lv, _ in CASES]}
    with helm_python.Chart.load(decision_chart) as chart:
        rendered = chart.render(values, name="probe", namespace="outrider")
    documents = [d for d in yaml.safe_load_all(rendered["probe/templates/cases.yaml"]) if d]
    got = [d["data"] for d in sorted(documents, key=lambda d: d["case"])]
    for (values_, live_, expected), actual in zip(CASES, got, strict=True):
        assert actual == expected, f"values {values_}, live {json.dumps(live_.get('data'))}"


def test_the_chart_uses_that_decision_with_lookup() -> None:
    template = (support.CHART / "templates" / "autonomy" / "configmap.yaml").read_text()
    assert 'lookup "v1" "ConfigMap" .Release.Namespace $name' in template
    assert 'include "outrider.autonomyData"' in template
