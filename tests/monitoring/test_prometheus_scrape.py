"""End to end: a real Prometheus scrapes a real control plane and the operator's metrics endpoint, and
evaluates Outrider's real alert rules on what it scraped.

The control plane is the `outrider control-plane` command (as the container runs it) on a temporary SQLite
file. Prometheus (Debian's /usr/bin/prometheus) runs in a temporary directory on 127.0.0.1 with a 1 s scrape
interval and the real rules file. Two tests:

- events posted to the control plane are read back with PromQL through Prometheus's HTTP API, next to the
  operator's own collector (outrider.operator.metrics) served as the operator serves it, fed a fixed view;
- the whole pipeline: the real operator (kopf against KMock as the Kubernetes API, the harness of
  tests/operator) admits two Runs, their Jobs succeed and fail, the operator posts the lifecycle to the control
  plane and exports its gauges, and Prometheus sees both sides and fires the breaker alert.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import start_http_server

from outrider.operator import metrics as operator_metrics
from tests.conftest import free_port, require_executable
from tests.monitoring import monitoring_support as support

pytestmark = pytest.mark.prometheus

TOKEN = "scrape-test-token"
TIMEOUT = 60.0


def poll(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Call ``check`` every 0.2 s until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OUTRIDER_DATABASE_URL": f"sqlite:///{tmp_path / 'cp.db'}",
           "OUTRIDER_API_TOKENS": TOKEN}
    log = (tmp_path / "control-plane.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "outrider.cli.main", "control-plane", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        poll("the control plane to be ready", lambda: process.poll() is None and httpx.get(f"{url}/readyz", timeout=2).status_code == 200
             or (process.poll() is not None and pytest.fail((tmp_path / "control-plane.log").read_text())))
        yield url
    finally:
        stop(process)
        log.close()


@pytest.fixture
def operator_endpoint() -> Iterator[str]:
    """The operator's collector, exporting one Target whose breaker is Open and autonomy paused."""
    view = operator_metrics.View(
        targets={("agents", "repo-a"): operator_metrics.TargetView(
            namespace="agents", name="repo-a", health="Blocked", breaker_state="Open", trips=1, consecutive_failures=2,
            open_prs=1, max_open_prs=2, max_concurrent_runs=1, active=0, pending=3)},
        autonomy_enabled=False,
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=operator_metrics.registry_for(view))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, jobs: dict[str, str]) -> Iterator[str]:
    """A real Prometheus scraping ``jobs`` ({job name: host:port}) every second and evaluating Outrider's rules."""
    binary = require_executable("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(support.RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address]}]} for job, address in jobs.items()],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        poll("Prometheus to be ready", lambda: process.poll() is None and httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
             or (process.poll() is not None and pytest.fail((tmp_path / "prometheus.log").read_text())))
        yield url
    finally:
        stop(process)
        log.close()


@pytest.fixture
def prometheus(tmp_path: Path, control_plane: str, operator_endpoint: str) -> Iterator[str]:
    jobs = {"outrider-control-plane": control_plane.removeprefix("http://"), "outrider-operator": operator_endpoint}
    with running_prometheus(tmp_path, jobs) as url:
        yield url


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(prometheus: str, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def both_targets_up(prometheus: str) -> float:
    """Wait until Prometheus has scraped both components; the time of the newer of their latest scrapes."""
    up = 'up{job=~"outrider-control-plane|outrider-operator"}'
    poll("both scrape targets up", lambda: scalar(prometheus, f"sum({up})") == 2)
    moment = scalar(prometheus, f"max(timestamp({up}))")
    assert moment is not None
    return moment


def assert_no_component_down(prometheus: str, scraped_at: float) -> None:
    """No OutriderControlPlaneDown/OutriderOperatorDown, once their group has evaluated with both scrapes in hand.

    The availability group evaluates on its own 1 s schedule. One evaluation that ran before a target's first
    scrape sees `absent(up)` and leaves the alert pending until its next evaluation, so the assertion first waits
    for an evaluation that started more than one interval after ``scraped_at`` (an evaluation reads the data as
    of its slot, which is at most one interval before it starts).
    """
    def evaluated_after() -> bool:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        last = next(group["lastEvaluation"] for group in groups if group["name"] == "outrider.availability")
        started = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", last))
        return started.timestamp() > scraped_at + 1.0

    poll("the availability rules evaluated after both scrapes", evaluated_after)
    assert query(prometheus, 'ALERTS{alertname=~"OutriderControlPlaneDown|OutriderOperatorDown"}') == []


def event(kind: str, run: str, target: str = "repo-a", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/tests/scrape", "type": kind,
            "time": dt.datetime.now(dt.UTC).isoformat(), "target": target, "runid": run, "data": data or {}}


def test_prometheus_scrapes_both_components_and_reads_the_increase(prometheus: str, control_plane: str) -> None:
    scraped_at = both_targets_up(prometheus)
    received = 'sum(outrider_events_received_total{job="outrider-control-plane"})'
    poll("the control plane's counters in Prometheus", lambda: scalar(prometheus, received) == 0)

    usage = {"provider": "anthropic", "model": "claude-sonnet-4", "input_tokens": 1200, "output_tokens": 300, "cost_usd": 0.25}
    batch = [
        event("run.created", "run-1"), event("run.started", "run-1"), event("run.llm_usage", "run-1", data=usage),
        event("run.succeeded", "run-1"),
        event("run.created", "run-2"), event("run.started", "run-2"),
        event("run.failed", "run-2", data={"error_type": "TestFailure", "message": "3 of 12 tests failed", "stage": "test"}),
    ]
    response = httpx.post(f"{control_plane}/v1/events", content=json.dumps(batch), timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents-batch+json"})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(batch)

    # The totals, read back through PromQL once Prometheus has scraped them.
    poll("the posted events in Prometheus", lambda: scalar(prometheus, received) == len(batch))
    series = 'outrider_events_received_total{job="outrider-control-plane"}'
    # The exact increase over the test (the counters started at 0 and never reset)...
    assert scalar(prometheus, f"sum(max_over_time({series}[5m]) - min_over_time({series}[5m]))") == len(batch)
    # ...and what increase() makes of it: it extrapolates to the end of the window by up to 1.1 average scrape
    # intervals (never below 0: the series started at 0), so over a few seconds of samples it reads between
    # the true increase and about twice it (1 + 1.1 / (samples - 1), samples >= 2).
    increase = scalar(prometheus, f"sum(increase({series}[5m]))")
    assert increase is not None and len(batch) <= increase <= len(batch) * 2.1
    runs = {r["metric"]["status"]: float(r["value"][1]) for r in query(prometheus, 'sum by (status) (outrider_runs_total{target="repo-a"})')}
    assert runs == {"succeeded": 1.0, "failed": 1.0}
    assert scalar(prometheus, 'sum(outrider_llm_cost_usd_total{target="repo-a", model="claude-sonnet-4"})') == pytest.approx(0.25)
    assert scalar(prometheus, 'sum(outrider_llm_tokens_total{target="repo-a", direction="output"})') == 300
    assert scalar(prometheus, 'count(outrider_run_duration_seconds_bucket{target="repo-a"})') is not None

    # The operator's gauges, and the real alert rules evaluated on them.
    assert scalar(prometheus, 'outrider_circuit_breaker_state{job="outrider-operator", target="repo-a", state="Open"}') == 1
    assert scalar(prometheus, 'outrider_circuit_breaker_trips_total{target="repo-a"}') == 1
    assert scalar(prometheus, "outrider_autonomy_enabled") == 0
    poll("OutriderCircuitBreakerTripped firing",
         lambda: query(prometheus, 'ALERTS{alertname="OutriderCircuitBreakerTripped", target="repo-a", alertstate="firing"}'))
    poll("OutriderAutonomyPausedLong pending (it needs 2 h to fire)",
         lambda: query(prometheus, 'ALERTS{alertname="OutriderAutonomyPausedLong", alertstate="pending"}'))
    assert_no_component_down(prometheus, scraped_at)


def test_the_whole_pipeline_operator_to_control_plane_to_prometheus(tmp_path: Path, control_plane: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The real operator (kopf, `outrider.operator.main.serve`, against KMock as the Kubernetes API) admits two
    Runs whose Jobs succeed and fail, posts their lifecycle to the real control plane, and exports its gauges;
    Prometheus scrapes both and fires the breaker alert from what the operator saw."""
    from tests.operator.operator_harness import Cluster, Operator, wait_for

    cluster = Cluster()
    metrics_port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": cluster.url}}],
        "users": [{"name": "test", "user": {"token": "kmock"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": "default"}}],
    }))
    env = {"KUBECONFIG": str(kubeconfig), "OUTRIDER_NAMESPACE": "default", "OUTRIDER_AUTONOMY_CONFIGMAP": "outrider-autonomy",
           "OUTRIDER_METRICS_PORT": str(metrics_port), "OUTRIDER_METRICS_HOST": "127.0.0.1", "OUTRIDER_HEARTBEAT_SECONDS": "0.5",
           "OUTRIDER_URL": control_plane, "OUTRIDER_TOKEN": TOKEN}
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for key, value in env.items():  # monkeypatch restores them: the operator reads os.environ
        monkeypatch.setenv(key, value)
    operator = Operator(env)
    jobs = {"outrider-control-plane": control_plane.removeprefix("http://"), "outrider-operator": f"127.0.0.1:{metrics_port}"}
    try:
        cluster.autonomy(enabled="true")
        cluster.target("repo-a", circuitBreaker={"failureThreshold": 1, "cooldownSeconds": 3600})
        operator.start()
        with running_prometheus(tmp_path, jobs) as prometheus:
            scraped_at = both_targets_up(prometheus)
            for name, ok in (("r1", True), ("r2", False)):
                cluster.run(name, "repo-a")
                wait_for(lambda n=name: (cluster.job(n) or {}).get("spec", {}).get("suspend") is False, what=f"{name} admitted")
                cluster.start_job(name)
                cluster.finish_job(name, ok=ok)

            runs = 'sum by (status) (outrider_runs_total{job="outrider-control-plane", target="repo-a"})'
            poll("both runs counted by the control plane, in Prometheus",
                 lambda: {r["metric"]["status"]: float(r["value"][1]) for r in query(prometheus, runs)} == {"succeeded": 1.0, "failed": 1.0})
            breaker = 'outrider_circuit_breaker_state{job="outrider-operator", namespace="default", target="repo-a", state="Open"}'
            poll("the operator's breaker gauge in Prometheus", lambda: scalar(prometheus, breaker) == 1)
            assert scalar(prometheus, 'outrider_autonomy_enabled{job="outrider-operator"}') == 1
            assert scalar(prometheus, 'outrider_circuit_breaker_trips_total{job="outrider-operator", target="repo-a"}') == 1
            poll("OutriderCircuitBreakerTripped firing from the operator's own view",
                 lambda: query(prometheus, 'ALERTS{alertname="OutriderCircuitBreakerTripped", target="repo-a", alertstate="firing"}'))
            assert_no_component_down(prometheus, scraped_at)
    finally:
        operator.stop()
        cluster.close()
