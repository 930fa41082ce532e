"""Each model's calls, error ratio and p95 latency on /metrics, recent against its own baseline (model_metrics.py):
the figures the OutriderModelDegradation alert compares, from the rollups, bounded in cardinality."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def call(model: str, when: datetime, n: int, *, latency: float, error: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"provider": "p", "model": model, "input_tokens": 10, "output_tokens": 1, "latency_s": latency}
    if error:
        data["error"] = "rate limited"
    return {**support.event("run.llm_usage", f"run-{model}", id=f"{model}-{when.timestamp()}-{n}", data=data),
            "time": when.isoformat()}


def samples(server: RunningServer) -> dict[tuple[str, str, str], float]:
    text = server.client.get("/metrics").text
    return {(s.name, s.labels["model"], s.labels["window"]): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name.startswith("outrider_model_")}


def test_recent_and_baseline_per_model(make_settings: Callable[..., settings.Settings],
                                       start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_settings(metrics_max_models=2))
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=6)  # in the baseline: the 24 clock hours before the recent two
    batch = [call("claude", earlier, n, latency=1.0) for n in range(20)]
    batch += [call("claude", now, n, latency=4.0, error=n % 2 == 0) for n in range(10)]
    batch += [call("gpt", now, n, latency=0.5) for n in range(5)]
    batch += [call(f"rare-{n}", now, 0, latency=2.0, error=True) for n in range(3)]  # beyond the 2 kept: "other"
    batch += [call("claude", now - timedelta(days=3), n, latency=9.0) for n in range(4)]  # before both windows
    assert server.client.post("/v1/events", json=batch).status_code == 202
    found = samples(server)
    assert found[("outrider_model_calls", "claude", "recent")] == 10
    assert found[("outrider_model_calls", "claude", "baseline")] == 20
    assert found[("outrider_model_error_ratio", "claude", "recent")] == 0.5
    assert found[("outrider_model_error_ratio", "claude", "baseline")] == 0
    assert found[("outrider_model_latency_p95_seconds", "claude", "recent")] == pytest.approx(4.0, rel=0.25)
    assert found[("outrider_model_latency_p95_seconds", "claude", "baseline")] == pytest.approx(1.0, rel=0.25)
    assert found[("outrider_model_calls", "other", "recent")] == 3 and found[("outrider_model_error_ratio", "other", "recent")] == 1
    assert {model for _, model, _ in found} == {"claude", "gpt", "other"}
    assert ("outrider_model_calls", "gpt", "baseline") not in found  # no calls then: no series, not a made-up 0
