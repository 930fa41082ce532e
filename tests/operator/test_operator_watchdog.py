"""The no-progress watchdog (operator/watchdog.py) on the emulated API server, with a real control plane.

Three running Runs: one whose worker keeps sending progress (never Stalled), one that goes silent on a Target
that only marks (Stalled=True, still Running, until progress comes back), one that goes silent on a Target that
stops stalled Runs (Failed with reason NoProgress, its Job suspended, counted by the breaker, run.failed in the
control plane). The timeout is 2 s so the test takes seconds; the rule is the same at 30 minutes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import httpx
from operator_harness import Cluster, Operator, assert_stored_objects_fit_the_crds, wait_for
from prometheus_client.parser import text_string_to_metric_families

from outrider.common import events
from outrider.operator import autonomy, watchdog
from tests.conftest import free_port
from tests.operator.conftest import CONTROL_PLANE_TOKEN as TOKEN


def progress(client: httpx.Client, run: str, target: str, n: int) -> None:
    event = {"specversion": "1.0", "id": f"{run}-progress-{n}-{time.time()}", "source": "/workers/test",
             "type": events.EventType.RUN_PROGRESS.value, "time": dt.datetime.now(dt.UTC).isoformat(),
             "runid": run, "target": target, "namespace": "default", "data": {"stage": "code", "iteration": n, "max_iterations": 100}}
    assert client.post("/v1/events", json=event).status_code == 202


def condition(cluster: Cluster, run: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in cluster.run_status(run).get("conditions") or [] if c["type"] == type_), None)


def test_a_silent_run_is_stalled_and_stopped_only_where_the_target_says(
        cluster: Cluster, operator_env: dict[str, str], control_plane: str) -> None:
    operator_env.update(OUTRIDER_URL=control_plane, OUTRIDER_TOKEN=TOKEN, OUTRIDER_WATCHDOG_CACHE_SECONDS="0")
    client = httpx.Client(base_url=control_plane, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    cluster.autonomy(enabled="true")
    cluster.target("busy", watchdog={"progressTimeoutSeconds": 2})
    cluster.target("quiet", watchdog={"progressTimeoutSeconds": 2})
    cluster.target("stuck", watchdog={"progressTimeoutSeconds": 2, "stopStalledRuns": True},
                   circuitBreaker={"failureThreshold": 5, "cooldownSeconds": 60})
    operator = Operator(operator_env).start()
    stop_progress = threading.Event()
    try:
        for run, target in (("r-busy", "busy"), ("r-quiet", "quiet"), ("r-stuck", "stuck")):
            cluster.run(run, target)
            wait_for(lambda run=run: (cluster.job(run) or {}).get("spec", {}).get("suspend") is False, what=f"{run} admitted")
            cluster.start_job(run)
            wait_for(lambda run=run: cluster.run_status(run).get("phase") == "Running", what=f"{run} running")

        def keep_busy(run: str, target: str) -> None:
            n = 0
            while not stop_progress.wait(0.5):
                n += 1
                progress(client, run, target, n)

        threading.Thread(target=keep_busy, args=("r-busy", "busy"), daemon=True).start()

        wait_for(lambda: cluster.run_status("r-stuck").get("phase") == "Failed", timeout=30, what="the stuck run stopped")
        stuck = cluster.run_status("r-stuck")
        assert stuck["reason"] == "NoProgress" and "progressTimeoutSeconds 2" in stuck["message"]
        assert condition(cluster, "r-stuck", "Succeeded")["reason"] == "NoProgress"
        job = cluster.job("r-stuck") or {}
        assert job["spec"]["suspend"] is True and job["metadata"]["annotations"]["outrider.dev/stopped"] == "NoProgress"
        wait_for(lambda: (cluster.target_status("stuck").get("breaker") or {}).get("consecutiveFailures") == 1,
                 what="the breaker counted the stopped run")
        failed = wait_for(lambda: client.get("/v1/runs/r-stuck").json().get("status") == "failed"
                          and client.get("/v1/runs/r-stuck").json(), what="run.failed in the control plane")
        assert failed["error_type"] == "NoProgress"

        wait_for(lambda: (condition(cluster, "r-quiet", "Stalled") or {}).get("status") == "True", timeout=30,
                 what="the quiet run marked Stalled")
        assert cluster.run_status("r-quiet")["phase"] == "Running"  # only marked: its Target does not stop
        assert condition(cluster, "r-quiet", "Stalled")["reason"] == "NoProgress"
        assert any(e.get("reason") == "NoProgress" for e in cluster.events_about("r-quiet"))
        wait_for(lambda: client.get("/v1/runs/r-quiet").json().get("stalled_since") is not None,
                 what="run.stalled in the control plane: the record says stalled_since")
        assert (condition(cluster, "r-busy", "Stalled") or {}).get("status") != "True"  # progress kept coming

        def stalled_gauge(target: str) -> float | None:
            text = httpx.get(operator.metrics_url).text
            return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                         if s.name == "outrider_runs_stalled" and s.labels.get("target") == target), None)

        wait_for(lambda: stalled_gauge("quiet") == 1, what="outrider_runs_stalled")
        assert stalled_gauge("busy") == 0

        threading.Thread(target=keep_busy, args=("r-quiet", "quiet"), daemon=True).start()  # the worker speaks again
        wait_for(lambda: (condition(cluster, "r-quiet", "Stalled") or {}).get("status") == "False", timeout=30,
                 what="Stalled cleared by progress")
        assert condition(cluster, "r-quiet", "Stalled")["reason"] == "Progressing"
        wait_for(lambda: client.get("/v1/runs/r-quiet").json().get("stalled_since") is None, what="stalled_since cleared")
        assert (condition(cluster, "r-busy", "Stalled") or {}).get("status") != "True"
        assert_stored_objects_fit_the_crds(cluster)
    finally:
        stop_progress.set()
        operator.stop()
        client.close()


def test_without_a_control_plane_the_watchdog_decides_nothing(cluster: Cluster, operator_env: dict[str, str]) -> None:
    """Blind is not silent: with no control plane to ask, no Run is marked or stopped."""
    operator_env.update(OUTRIDER_URL=f"http://127.0.0.1:{free_port()}", OUTRIDER_TOKEN=TOKEN)
    cluster.autonomy(enabled="true")
    cluster.target("stuck", watchdog={"progressTimeoutSeconds": 1, "stopStalledRuns": True})
    operator = Operator(operator_env).start()
    try:
        cluster.run("r1", "stuck")
        wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False, what="admitted")
        cluster.start_job("r1")
        wait_for(lambda: cluster.run_status("r1").get("phase") == "Running", what="running")
        time.sleep(4)
        assert cluster.run_status("r1")["phase"] == "Running" and condition(cluster, "r1", "Stalled") is None
    finally:
        operator.stop()


def test_the_policy_and_verdict_rules() -> None:
    assert watchdog.policy(None, None) is None
    assert watchdog.policy({}, 600) == watchdog.Policy(600, False)  # the ConfigMap's default
    assert watchdog.policy({"progressTimeoutSeconds": 30, "stopStalledRuns": True}, 600) == watchdog.Policy(30, True)
    assert watchdog.policy({"progressTimeoutSeconds": 0}, None) is None  # invalid: the schema refuses it anyway
    now = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
    quiet = watchdog.verdict(now - dt.timedelta(seconds=59), now, 60)
    assert not quiet.stalled and quiet.recheck_at == now + dt.timedelta(seconds=1)
    assert watchdog.verdict(now - dt.timedelta(seconds=60), now, 60).stalled
    parsed = autonomy.parse({"data": {"enabled": "true", "progressTimeoutSeconds": "900"}})
    assert parsed.enabled and parsed.progress_timeout_seconds == 900
    bad = autonomy.parse({"data": {"enabled": "true", "progressTimeoutSeconds": "soon"}})
    assert not bad.enabled and bad.reason == "ConfigInvalid" and "progressTimeoutSeconds" in bad.message  # fail closed
