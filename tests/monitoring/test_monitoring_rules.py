"""The alert rules: promtool accepts them, every alert has a promtool unit test that shows it firing and not
firing, a runbook and the three annotations, and every series they read is one Outrider exports."""

from __future__ import annotations

import pytest
import yaml

from tests.monitoring import monitoring_support as support

pytestmark = pytest.mark.prometheus

#: The alerts issue 4 asks for (OutriderBudgetBurn came with the budget metrics of issue 7).
ALERTS = {
    "OutriderControlPlaneDown",
    "OutriderOperatorDown",
    "OutriderCircuitBreakerTripped",
    "OutriderHighFailureRate",
    "OutriderMaxOpenPRsReached",
    "OutriderAutonomyPausedLong",
    "OutriderModelDegradation",
    "OutriderQueueStarvation",
    "OutriderCostSpike",
    "OutriderBudgetBurn",
    "OutriderProjectionLagging",  # issue 14: the projection follows the event log
}


def rules() -> list[dict]:
    groups = yaml.safe_load(support.RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    result = support.promtool("check", "rules", support.RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_promtool_unit_tests(alert: str) -> None:
    path = support.RULE_TESTS / f"{alert}.yaml"
    assert path.exists(), f"no promtool unit test for {alert}"
    result = support.promtool("test", "rules", path.name, cwd=support.RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_each_alert_is_shown_firing_and_not_firing(alert: str) -> None:
    document = yaml.safe_load((support.RULE_TESTS / f"{alert}.yaml").read_text())
    cases = [case for test in document["tests"] for case in test.get("alert_rule_test", []) if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"{alert}: no case where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{alert}: no case where it stays quiet"


def test_the_alert_set_and_their_annotations() -> None:
    by_name = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(by_name) == ALERTS
    for name, rule in by_name.items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == support.RUNBOOK_URL.format(name)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_each_alert_has_a_runbook(alert: str) -> None:
    runbook = support.RUNBOOKS / f"{alert}.md"
    assert runbook.exists(), f"missing {runbook.relative_to(support.ROOT)}"
    text = runbook.read_text()
    for section in ("## Symptom", "## Check", "## Fix"):
        assert section in text, f"{alert} runbook lacks {section}"


def test_rules_read_only_exported_metrics() -> None:
    exported = support.exported_metrics()
    for rule in rules():
        unknown = support.metric_names(rule["expr"]) - exported
        assert unknown == set(), f"{rule.get('alert') or rule.get('record')} reads metrics nobody exports: {unknown}"
