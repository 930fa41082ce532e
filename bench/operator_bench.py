"""Operator benchmark with KMock: 1,000 Runs across 50 Targets.

The operator runs as it ships — ``outrider operator --standalone`` in its own process — against a KMock
API server (the test suite's harness, ``tests/operator/operator_harness.py``) in a second process
(``bench.kmock_server``), measured from the harness process: three processes, so the operator's peak RSS
(``VmHWM``) and CPU are its own and nobody shares a GIL. Watches on Runs and Jobs (``?watch=true``) timestamp every
change the moment KMock sends it, so no polling sits between a change and its measurement.

Three phases:

1. admission: create the Runs (``maxConcurrentRuns`` lets all of them run) → time until each Job is unsuspended,
   and until each Run's status says ``Admitted``; then how long the operator stays busy after the last
   unsuspension (until it uses less than ``QUIET_CORES``);
2. Job completion → Run status, once the operator is quiet: mark Jobs succeeded at a steady rate
   (``COMPLETIONS_PER_S``, what a busy cluster's Job controller does) → time until each Run's ``status.phase``
   is ``Succeeded``;
3. autonomy resume: with autonomy off, create a second set of Runs (their Jobs exist, suspended); turn
   autonomy on → time until each Job is unsuspended (p50, p99, all).

The operator does not send events to a control plane here (``OUTRIDER_URL`` unset): this measures the
operator alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import config as config_module
from bench import servers, stats
from outrider.common import k8s
from outrider.operator import kube

COMPLETIONS_PER_S = 100.0
#: The operator counts as quiet below this much CPU (cores): its Kubernetes Events still trickle out (50/s paced).
QUIET_CORES = 0.3
#: Run phases that say the operator has admitted the Run (its Job unsuspended) or gone further.
ADMITTED_OR_LATER = (k8s.PHASE_ADMITTED, k8s.PHASE_RUNNING, *k8s.TERMINAL_PHASES)
PHASE_TIMEOUT_S = 180.0


class Watcher:
    """Streams ``?watch=true`` of one resource list in a thread and calls ``on_event(type, object, t)``."""

    def __init__(self, url: str, on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        self.url = url
        self.on_event = on_event
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True, name=f"watch {url}")
        self.thread.start()

    def _main(self) -> None:
        while not self.stop.is_set():
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
                    client.stream("GET", self.url, params={"watch": "true"}) as response,
                ):
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.strip():
                            item = json.loads(line)
                            self.on_event(item.get("type", ""), item.get("object") or {}, time.perf_counter())
            except (httpx.HTTPError, ValueError):
                time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _quiet(pid: int, below_cores: float = QUIET_CORES, window_s: float = 0.5, timeout: float = 60.0) -> float:
    """Wait until a process uses less than ``below_cores`` of CPU over ``window_s``; when (``perf_counter``), the
    start of the first quiet window. After ``timeout``, the time it gave up."""
    deadline = time.perf_counter() + timeout
    before, start = servers.cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() < deadline:
        time.sleep(window_s)
        now, end = servers.cpu_seconds(pid), time.perf_counter()
        if before is None or now is None or (now - before) / (end - start) < below_cores:
            return start
        before, start = now, end
    return time.perf_counter()


def _latencies(starts: dict[str, float], ends: dict[str, float]) -> dict[str, Any]:
    values = [ends[name] - starts[name] for name in starts if name in ends]
    return {
        "count": len(values),
        "missing": len(starts) - len(values),
        "p50_s": stats.percentile(values, 50),
        "p99_s": stats.percentile(values, 99),
        "max_s": max(values) if values else None,
    }


class Api:
    """The few Kubernetes API calls the benchmark makes, over plain HTTP like kubectl."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)

    def create(self, path: str, body: dict[str, Any]) -> None:
        self.http.post(path, json=body).raise_for_status()

    def merge_patch(self, path: str, body: dict[str, Any]) -> None:
        response = self.http.patch(
            path, content=json.dumps(body), headers={"Content-Type": "application/merge-patch+json"}
        )
        response.raise_for_status()

    def request_counts(self) -> dict[str, int]:
        """The emulator's requests served so far, by "VERB plural[/subresource]" (bench/kmock_server.py)."""
        response = self.http.get("/bench/requests")
        return dict(response.json()) if response.status_code == 200 else {}

    def close(self) -> None:
        self.http.close()


def _run_body(name: str, target: str) -> dict[str, Any]:
    job_template = {
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "agent:1"}]}},
        }
    }
    return {
        "apiVersion": k8s.API_VERSION,
        "kind": k8s.RUN_KIND,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"target": target, "template": job_template},
    }


def _job_succeeded() -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "active": 0,
            "succeeded": 1,
            "startTime": stamp,
            "completionTime": stamp,
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": stamp}],
        }
    }


def run(config: config_module.BenchConfig, workdir: Path, log: Callable[..., Any]) -> dict[str, Any]:
    try:
        import kmock  # noqa: F401 - the harness needs it

        from outrider.operator import handlers  # noqa: F401 - the operator must import
    except ImportError as exc:
        return {"skipped": f"operator or KMock not importable: {exc}"}

    runs_n, targets_n = config.operator_runs, config.operator_targets
    per_target = -(-runs_n // targets_n)
    env_base = {
        k: v for k, v in os.environ.items() if k not in ("OUTRIDER_URL", "OUTRIDER_TOKEN", "KUBERNETES_SERVICE_HOST")
    }
    env_base["PYTHONPATH"] = str(servers.REPO)
    kmock_process = subprocess.Popen(
        [sys.executable, *os.environ.get("BENCH_KMOCK_CMD", "-m bench.kmock_server").split()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(workdir / "kmock.log").open("wb"),
        cwd=servers.REPO,
        env=env_base,
    )
    process: subprocess.Popen[bytes] | None = None
    watchers: list[Watcher] = []
    api: Api | None = None
    try:
        assert kmock_process.stdout is not None
        line = kmock_process.stdout.readline().decode().strip()
        if not line.startswith("URL "):
            raise RuntimeError(f"KMock did not start: {line!r}; see {workdir / 'kmock.log'}")
        url = line.split(" ", 1)[1]
        api = Api(url)
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": url}}],
                    "users": [{"name": "bench", "user": {"token": "bench"}}],
                    "contexts": [
                        {"name": "kmock", "context": {"cluster": "kmock", "user": "bench", "namespace": "default"}}
                    ],
                }
            )
        )
        configmap = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": k8s.AUTONOMY_CONFIGMAP_DEFAULT, "namespace": "default"},
            "data": {"enabled": "true"},
        }
        api.create(kube.configmaps("default"), configmap)
        for t in range(targets_n):
            api.create(
                kube.targets("default"),
                {
                    "apiVersion": k8s.API_VERSION,
                    "kind": k8s.TARGET_KIND,
                    "metadata": {"name": f"repo-{t}", "namespace": "default"},
                    "spec": {"maxConcurrentRuns": per_target},
                },
            )

        def set_autonomy(enabled: bool) -> None:
            assert api is not None
            api.merge_patch(
                kube.configmaps("default", k8s.AUTONOMY_CONFIGMAP_DEFAULT), {"data": {"enabled": str(enabled).lower()}}
            )

        # Timestamps from the watches: run -> first time seen Admitted (or later) and Succeeded; job -> first time
        # seen unsuspended.
        lock = threading.Lock()
        succeeded_at: dict[str, float] = {}
        admitted_at: dict[str, float] = {}
        unsuspended_at: dict[str, float] = {}
        job_seen: set[str] = set()

        def on_run(kind: str, obj: dict[str, Any], now: float) -> None:
            name = (obj.get("metadata") or {}).get("name")
            phase = (obj.get("status") or {}).get("phase")
            if name and phase in ADMITTED_OR_LATER:
                with lock:
                    admitted_at.setdefault(name, now)
                    if phase == k8s.PHASE_SUCCEEDED:
                        succeeded_at.setdefault(name, now)

        def on_job(kind: str, obj: dict[str, Any], now: float) -> None:
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                return
            with lock:
                job_seen.add(name)
                if (obj.get("spec") or {}).get("suspend") is False:
                    unsuspended_at.setdefault(name, now)

        watchers.append(Watcher(url + kube.runs(), on_run))
        watchers.append(Watcher(url + kube.jobs(), on_job))

        liveness_port, metrics_port = servers.free_port(), servers.free_port()
        env = {
            **env_base,
            "KUBECONFIG": str(kubeconfig),
            "OUTRIDER_NAMESPACE": "default",
            "OUTRIDER_METRICS_HOST": "127.0.0.1",
        }
        # BENCH_OPERATOR_PYTHON_ARGS goes before "-m outrider.cli.main", e.g. "-m pyinstrument -o op.txt" to profile.
        argv = [
            sys.executable, *os.environ.get("BENCH_OPERATOR_PYTHON_ARGS", "").split(),
            "-m", "outrider.cli.main", "operator", "--standalone",
            "--liveness", f"http://127.0.0.1:{liveness_port}/healthz", "--metrics-port", str(metrics_port),
        ]  # fmt: skip
        with (workdir / "operator.log").open("wb") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=servers.REPO)

        def alive() -> bool:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"operator exited with {process.returncode}; see {workdir / 'operator.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait(alive, 60, "the operator's liveness endpoint")
        log(f"  operator up (pid {process.pid}); creating {runs_n} Runs across {targets_n} Targets", highlight=False)
        cpu_start = {"operator": servers.cpu_seconds(process.pid), "kmock": servers.cpu_seconds(kmock_process.pid)}
        phases: dict[str, Any] = {}

        # Phase 1: admission of new Runs.
        created: dict[str, float] = {}
        for i in range(runs_n):
            name = f"bench-a-{i:05d}"
            created[name] = time.perf_counter()
            api.create(kube.runs("default"), _run_body(name, f"repo-{i % targets_n}"))
        _wait(lambda: all(n in unsuspended_at for n in created), PHASE_TIMEOUT_S, "every Job unsuspended")
        last_unsuspended = max(unsuspended_at[n] for n in created)
        phases["admission"] = _latencies(created, unsuspended_at)
        log(f"  admission: {phases['admission']}", highlight=False)
        # Phase 2 measures completions, not the admission burst's tail: it starts once every Run says Admitted and
        # the operator has gone quiet (at 1,000 Runs it stayed busy ~2 s after the last unsuspension, and the
        # first ~150 completions waited for that: p50 0.71 s in the first 50, 0.01 s once it was done).
        _wait(lambda: all(n in admitted_at for n in created), PHASE_TIMEOUT_S, "every Run's status Admitted")
        phases["admitted_status"] = _latencies(created, admitted_at)
        quiet_after_s = _quiet(process.pid) - last_unsuspended
        log(f"  Run status Admitted: {phases['admitted_status']}; operator quiet {quiet_after_s:.2f} s after the last "
            "unsuspension", highlight=False)

        # Phase 2: Job completion → Run status, at a steady completion rate.
        cpu_phase2 = {"operator": servers.cpu_seconds(process.pid), "kmock": servers.cpu_seconds(kmock_process.pid)}
        requests_phase2 = api.request_counts()
        completed: dict[str, float] = {}
        interval = 1.0 / COMPLETIONS_PER_S
        next_at = time.perf_counter()
        for name in created:
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            next_at += interval
            completed[name] = time.perf_counter()
            api.merge_patch(kube.jobs("default", name) + "/status", _job_succeeded())
        _wait(lambda: all(n in succeeded_at for n in completed), PHASE_TIMEOUT_S, "every Run Succeeded")
        phases["job_to_status"] = _latencies(completed, succeeded_at)
        # CPU per completion (ms) of each process over phase 2: the operator's cost of one Job → Run status, with
        # the events and index updates it causes; independent of the other load on the machine.
        per_completion = {
            name: (None if before is None or after is None else (after - before) * 1000.0 / runs_n)
            for name, before, after in (
                ("operator", cpu_phase2["operator"], servers.cpu_seconds(process.pid)),
                ("kmock", cpu_phase2["kmock"], servers.cpu_seconds(kmock_process.pid)),
            )
        }
        # API requests per completion over phase 2 (the benchmark's own status patches included: one per Job).
        requests_after = api.request_counts()
        per_kind = {k: (n - requests_phase2.get(k, 0)) / runs_n for k, n in requests_after.items()}
        per_kind = {k: v for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1]) if v}
        log(f"  Job→Run status: {phases['job_to_status']}", highlight=False)
        log(f"  API requests per completion: {per_kind}", highlight=False)

        # Phase 3: autonomy off, a second set of Runs waits; autonomy on → admission after resume.
        set_autonomy(False)
        time.sleep(1.0)  # the operator reads the ConfigMap through its watch; Runs created after this are held
        waiting = [f"bench-b-{i:05d}" for i in range(runs_n)]
        for i, name in enumerate(waiting):
            api.create(kube.runs("default"), _run_body(name, f"repo-{i % targets_n}"))
        _wait(lambda: all(n in job_seen for n in waiting), PHASE_TIMEOUT_S, "every held Run's Job created")
        early = [n for n in waiting if n in unsuspended_at]
        resumed_at = time.perf_counter()
        set_autonomy(True)
        _wait(lambda: all(n in unsuspended_at for n in waiting), PHASE_TIMEOUT_S, "every Job unsuspended after resume")
        phases["resume"] = _latencies(dict.fromkeys(waiting, resumed_at), unsuspended_at)
        log(f"  resume: {phases['resume']}", highlight=False)

        memory = servers.Server(
            name="operator", argv=[], port=0, log_path=workdir / "operator.log", process=process
        ).rss_mb()
        cpu = {
            name: (None if before is None or after is None else after - before)
            for name, before, after in (
                ("operator", cpu_start["operator"], servers.cpu_seconds(process.pid)),
                ("kmock", cpu_start["kmock"], servers.cpu_seconds(kmock_process.pid)),
            )
        }
        return {
            "runs": runs_n,
            "targets": targets_n,
            "completions_per_s": COMPLETIONS_PER_S,
            "admission_p50_s": phases["admission"]["p50_s"],
            "admission_p99_s": phases["admission"]["p99_s"],
            "admitted_status_p50_s": phases["admitted_status"]["p50_s"],
            "admitted_status_p99_s": phases["admitted_status"]["p99_s"],
            "quiet_after_admission_s": quiet_after_s,
            "job_to_status_p50_s": phases["job_to_status"]["p50_s"],
            "job_to_status_p99_s": phases["job_to_status"]["p99_s"],
            "job_to_status_max_s": phases["job_to_status"]["max_s"],
            "resume_admission_p50_s": phases["resume"]["p50_s"],
            "resume_admission_p99_s": phases["resume"]["p99_s"],
            "resume_admission_all_s": phases["resume"]["max_s"],
            "admitted_while_paused": len(early),
            "peak_rss_mb": memory["peak_rss_mb"],
            "rss_mb_at_end": memory["rss_mb"],
            "operator_cpu_s": cpu["operator"],
            "kmock_cpu_s": cpu["kmock"],
            "operator_cpu_ms_per_completion": per_completion["operator"],
            "kmock_cpu_ms_per_completion": per_completion["kmock"],
            "api_requests_per_completion": sum(per_kind.values()) if per_kind else None,
            "api_requests_per_completion_by_kind": ", ".join(f"{k} {v:.2f}" for k, v in per_kind.items()) or None,
        }
    finally:
        for watcher in watchers:
            watcher.close()
        if api is not None:
            api.close()
        for proc in (process, kmock_process):
            if proc is None or proc.poll() is not None:
                continue
            if proc is kmock_process and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            else:
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()
