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
