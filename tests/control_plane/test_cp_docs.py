"""The generated reference in docs/events.md matches the event models, and the docs name every route and metric."""

from __future__ import annotations

from pathlib import Path

from outrider.control_plane import eventdocs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_events_doc_is_current() -> None:
    text = eventdocs.DOC.read_text(encoding="utf-8")
    assert eventdocs.render(text) == text, "docs/events.md is stale: run `python -m outrider.control_plane.eventdocs`"


def test_api_doc_names_every_route() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    for route in (
        "POST /v1/events", "GET /v1/events", "GET /v1/events/stream", "GET /v1/runs", "GET /v1/runs/{run_id}",
        "GET /v1/runs/summary", "GET /v1/analytics/errors", "GET /v1/health", "GET /readyz", "GET /metrics",
        "GET /v1/projection",
    ):
        assert f"`{route}`" in text, route


def test_metrics_doc_names_every_metric() -> None:
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    for name in (
        "outrider_events_received_total", "outrider_events_rejected_total", "outrider_runs_total",
        "outrider_run_duration_seconds", "outrider_llm_tokens_total", "outrider_llm_cost_usd_total",
        "outrider_prs_created_total", "outrider_store_up", "outrider_ingest_duration_seconds",
        "outrider_log_position", "outrider_projection_position", "outrider_projection_lag_events",
        "outrider_projection_lag_seconds", "outrider_projector_up",
    ):
        assert f"`{name}" in text, name


def test_routes_and_collectors_never_touch_the_engine() -> None:
    """Layering (issue 14): routes, the console and the metrics collectors read through the store's methods and
    ``Store.reading()``, never through ``store.engine`` (one place maps database errors to 503)."""
    package = Path(__file__).resolve().parents[2] / "outrider" / "control_plane"
    modules = [*package.glob("routes/*.py"), *package.glob("console/*.py"),
               *(package / name for name in ("metrics.py", "status_metrics.py", "budget_metrics.py"))]
    offenders = [str(path.relative_to(package)) for path in modules if ".engine" in path.read_text(encoding="utf-8")]
    assert len(modules) > 10 and offenders == []
