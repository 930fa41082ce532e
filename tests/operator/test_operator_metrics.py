"""The operator's Prometheus metrics (built at scrape time) and the `outrider operator` command as a process."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time

import httpx
from operator_harness import Cluster, Operator, wait_for
from prometheus_client.parser import text_string_to_metric_families

from outrider.operator import metrics
from tests.conftest import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_reads_the_view_at_scrape_time() -> None:
    view = metrics.View(events_dropped=lambda: 7, events_buffered=lambda: 3, kube_events_dropped=lambda: 11,
                        kube_events_queued=lambda: 2)
    registry = metrics.registry_for(view)
    assert registry.get_sample_value("outrider_autonomy_enabled") is None  # unknown until the ConfigMap is read
    view.autonomy_enabled = False
    view.targets[("default", "repo-a")] = metrics.TargetView(
        namespace="default", name="repo-a", health="Blocked", breaker_state="Open", trips=4, consecutive_failures=2,
        open_prs=None, max_open_prs=2, max_concurrent_runs=3, active=1, pending=5,
        oldest_pending=dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC))
    labels = {"namespace": "default", "target": "repo-a"}
    assert registry.get_sample_value("outrider_autonomy_enabled") == 0
    assert registry.get_sample_value("outrider_target_health", {**labels, "health": "Blocked"}) == 1
    assert registry.get_sample_value("outrider_target_health", {**labels, "health": "Healthy"}) == 0
    assert registry.get_sample_value("outrider_circuit_breaker_state", {**labels, "state": "Open"}) == 1
    assert registry.get_sample_value("outrider_circuit_breaker_trips_total", labels) == 4
    assert registry.get_sample_value("outrider_target_open_prs", labels) is None  # unknown, not 0
    assert registry.get_sample_value("outrider_target_max_open_prs", labels) == 2
    assert registry.get_sample_value("outrider_runs_active", labels) == 1
    assert registry.get_sample_value("outrider_runs_pending", labels) == 5
    assert registry.get_sample_value("outrider_runs_oldest_pending_timestamp_seconds", labels) == 1_796_472_000
    view.targets[("default", "repo-a")] = dataclasses.replace(view.targets[("default", "repo-a")], pending=0, oldest_pending=None)
    assert registry.get_sample_value("outrider_runs_oldest_pending_timestamp_seconds", labels) is None  # none waits: absent
    assert registry.get_sample_value("outrider_operator_events_dropped_total") == 7
    assert registry.get_sample_value("outrider_operator_events_buffered") == 3
    assert registry.get_sample_value("outrider_operator_kube_events_dropped_total") == 11
    assert registry.get_sample_value("outrider_operator_kube_events_queued") == 2


def test_running_operator_serves_metrics_from_the_cluster(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=1, maxOpenPRs=3, annotations={"outrider.dev/open-prs": "1"})
    operator.start()
    cluster.run("r1", "repo-a")
    cluster.run("r2", "repo-a")
    wait_for(lambda: cluster.target_status("repo-a").get("pendingRuns") == 1)
    assert cluster.target_status("repo-a")["openPRs"] == 1
    text = httpx.get(operator.metrics_url).text
    got = samples(text)
    key = (("namespace", "default"), ("target", "repo-a"))
    assert got[("outrider_runs_active", key)] == 1
    assert got[("outrider_runs_pending", key)] == 1
    waiting_since = got[("outrider_runs_oldest_pending_timestamp_seconds", key)]  # the one not admitted
    (waiting,) = [name for name in ("r1", "r2") if cluster.run_status(name).get("phase") in (None, "Pending")]
    created = cluster.run_obj(waiting)["metadata"]["creationTimestamp"]
    assert waiting_since == dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    assert abs(time.time() - waiting_since) < 120
    # Conditions first (issue 18): the waiting Run's summary condition is there already; the Target says why it waits.
    summary = next(c for c in cluster.run_status(waiting)["conditions"] if c["type"] == "Succeeded")
    assert (summary["status"], summary["reason"]) == ("Unknown", "Pending")
    admitting = {c["type"]: c for c in cluster.target_status("repo-a")["conditions"]}["Admitting"]
    assert (admitting["status"], admitting["reason"]) == ("False", "ConcurrencyLimit") and "1 waiting" in admitting["message"]
    assert got[("outrider_target_open_prs", key)] == 1
    assert got[("outrider_target_max_open_prs", key)] == 3
    assert got[("outrider_target_health", tuple(sorted((*key, ("health", "Healthy")))))] == 1
    assert got[("outrider_circuit_breaker_state", tuple(sorted((*key, ("state", "Closed")))))] == 1
    assert got[("outrider_autonomy_enabled", ())] == 1
    assert ("outrider_operator_events_dropped_total", ()) in got


def test_the_outrider_operator_command_runs_kopf_with_liveness_and_metrics(cluster: Cluster,
                                                                           operator_env: dict[str, str]) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    liveness_port, metrics_port = free_port(), free_port()
    env = {**os.environ, **operator_env, "OUTRIDER_METRICS_HOST": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "outrider.cli.main", "operator", "--standalone",
         "--liveness", f"http://127.0.0.1:{liveness_port}/healthz", "--metrics-port", str(metrics_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = wait_for(lambda: _get(f"http://127.0.0.1:{liveness_port}/healthz"), timeout=20, what="liveness")
        assert "autonomy" in health.json()  # kopf caches probe results for 10 s: the content may be the first one
        cluster.run("r1", "repo-a")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted")
        text = wait_for(lambda: (r := _get(f"http://127.0.0.1:{metrics_port}/metrics")) and r.text)
        assert "outrider_runs_active" in text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output[-3000:]


def _get(url: str) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None
