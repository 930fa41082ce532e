"""``make demo`` end to end, sped up: runs flow, a breaker trips, and `outrider autonomy pause` shows on the dashboard.

The demo's own parts run for real (KMock, the control plane under uvicorn, the operator, the driver and its
workers); only its pace is faster. Assertions poll the public API with bounded timeouts.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from outrider.demo import runner
from tests.cli.conftest import cli_env, outrider_command
from tests.conftest import missing

pytestmark = pytest.mark.slow

FAST = {"run_every": 0.3, "run_seconds": (0.3, 0.9), "merge_every": 4.0}
ENV_KEYS = ("KUBECONFIG", "OUTRIDER_NAMESPACE", "OUTRIDER_URL", "OUTRIDER_TOKEN", "OUTRIDER_HEARTBEAT_SECONDS",
            "OUTRIDER_METRICS_PORT", "KUBERNETES_SERVICE_HOST")


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[runner.Demo]:
    try:
        import kmock  # noqa: F401
    except ImportError:
        missing("kmock", "the demo's Kubernetes API emulator (test extra)")
    for key in ENV_KEYS:  # the demo sets these for its operator; monkeypatch restores them afterwards
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    running = runner.Demo(seed=7, driver_options=FAST, heartbeat_seconds=0.5)
    try:
        yield running.start()
    finally:
        running.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def test_demo_runs_flow_breaker_trips_and_pause_shows(demo: runner.Demo) -> None:
    api = httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {demo.token}"}, timeout=10)

    def runs(status: str) -> list[dict[str, Any]]:
        return list(api.get("/v1/runs", params={"status": status, "limit": 1000}).json()["items"])

    wait_for(lambda: len(runs("succeeded")) >= 3, 60, "succeeded runs")
    tripped = wait_for(
        lambda: api.get("/v1/events", params={"type": "target.breaker.tripped"}).json()["items"], 90, "a breaker trip"
    )
    assert tripped[0]["event"]["target"] == "payments-api"
    failed = runs("failed")
    assert any(run["error_summary"] for run in failed)
    assert any(run["llm_usage"] and run["llm_usage"]["total"]["cost_usd"] for run in runs("succeeded"))

    # The kill switch from the CLI, with the kubeconfig the demo prints.
    env = cli_env(KUBECONFIG=str(demo.kubeconfig), OUTRIDER_NAMESPACE=runner.NAMESPACE, OUTRIDER_URL=demo.url,
                  OUTRIDER_TOKEN=demo.token)
    paused = subprocess.run([*outrider_command(), "autonomy", "pause", "--reason", "demo test"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert paused.returncode == 0, paused.stderr
    status = wait_for(lambda: (s := api.get("/v1/status").json())["autonomy"]["enabled"] is False and s, 30,
                      "the operator to report autonomy paused")
    assert "autonomy_paused" in status["blocked_by"] and "demo test" in status["reason"]

    # Every console page says DEMO.
    console = httpx.Client(base_url=demo.url, timeout=10)
    console.post("/login", data={"token": demo.token, "next": "/"})
    for path in ("/", "/runs", f"/runs/{failed[0]['run_id']}"):
        page = console.get(path)
        assert page.status_code == 200 and "DEMO — simulated" in page.text, path
    assert "Autonomy paused" in console.get("/").text
    api.close()
    console.close()
