"""docs/reference/crds.md is generated from manifests/crds and must be current."""

from __future__ import annotations

from outrider.operator import crddocs


def test_the_crd_reference_is_current() -> None:
    text = crddocs.DOC.read_text(encoding="utf-8")
    assert crddocs.render(text) == text, "docs/reference/crds.md is stale: run `python -m outrider.operator.crddocs`"


def test_every_spec_and_status_field_is_documented() -> None:
    section = crddocs.generated()
    for field in ("spec.target", "spec.circuitBreaker.cooldownSeconds", "spec.budget.pacing", "status.breaker.lastFailure.run",
                  "status.usage.costUSD", "status.conditions[].lastTransitionTime"):
        assert f"`{field}`" in section, field


def test_every_condition_type_and_reason_constant_is_listed() -> None:
    from outrider.common import k8s

    section = crddocs.DOC.read_text(encoding="utf-8").split("## Conditions", 1)[1]
    names = [name for name in dir(k8s) if name.startswith(("REASON_", "CONDITION_"))]
    assert len(names) > 20
    for name in names:
        assert f"`{getattr(k8s, name)}`" in section, name
