"""kill -9 of the operator mid-admission: after each restart it converges and never over-admits.

The operator runs as shipped (``outrider operator --standalone``, a subprocess, so SIGKILL is a real crash)
against the test suite's KMock. Three Targets allow 2 concurrent Runs each; 12 Runs wait. A watch on Jobs
records, at every change, how many of each Target's Jobs are admitted (unsuspended) and unfinished. The
test finishes one admitted Job at a time so the operator keeps admitting, and SIGKILLs it right after it
has unsuspended a Job (mid-pass: the Run's status and the Target's status are written after the Job), then
restarts it, three times. At the end every Run has run and succeeded, and at no moment did a Target have
more than 2 admitted unfinished Jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from outrider.common import k8s
from outrider.operator import kube
from tests.conftest import free_port
from tests.operator import operator_harness

pytestmark = pytest.mark.slow

TARGETS = 3
LIMIT = 2
RUNS = 12
KILLS = 3
TIMEOUT_S = 60.0


class JobWatch:
    """Streams Job changes; keeps each Job's latest state and the peak of admitted unfinished Jobs per Target."""

    def __init__(self, url: str) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.peak: dict[str, int] = {}
        self.unsuspensions = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(url,), daemon=True)
        self.thread.start()

    @staticmethod
    def active(job: dict[str, Any]) -> bool:
        status = job.get("status") or {}
        return (
            (job.get("spec") or {}).get("suspend") is False and not status.get("succeeded") and not status.get("failed")
        )

    def _main(self, url: str) -> None:
        while not self.stop.is_set():
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
                    client.stream("GET", url, params={"watch": "true"}) as response,
                ):
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.strip():
                            self._seen(json.loads(line).get("object") or {})
            except (httpx.HTTPError, ValueError):
                time.sleep(0.05)

    def _seen(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        with self.lock:
            before = self.jobs.get(name)
            if self.active(job) and (before is None or (before.get("spec") or {}).get("suspend") is not False):
                self.unsuspensions += 1
            self.jobs[name] = job
            per_target: dict[str, int] = {}
            for item in self.jobs.values():
                if self.active(item):
                    target = (item["metadata"].get("labels") or {}).get(k8s.LABEL_TARGET, "")
                    per_target[target] = per_target.get(target, 0) + 1
            for target, count in per_target.items():
                self.peak[target] = max(self.peak.get(target, 0), count)

    def active_jobs(self) -> list[str]:
        with self.lock:
            return sorted(name for name, job in self.jobs.items() if self.active(job))


def wait(check: Any, what: str, timeout: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig, self.log = kubeconfig, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        liveness = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OUTRIDER_URL", "OUTRIDER_TOKEN", "KUBERNETES_SERVICE_HOST")
        }
        env.update(
            {"KUBECONFIG": str(self.kubeconfig), "OUTRIDER_NAMESPACE": "default", "OUTRIDER_METRICS_HOST": "127.0.0.1"}
        )
        argv = [
            sys.executable, "-m", "outrider.cli.main", "operator", "--standalone",
            "--liveness", f"http://127.0.0.1:{liveness}/healthz", "--metrics-port", str(free_port()),
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

        def alive() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                return httpx.get(f"http://127.0.0.1:{liveness}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait(alive, "the operator's liveness endpoint")

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def cluster() -> Iterator[operator_harness.Cluster]:
    c = operator_harness.Cluster()
    try:
        yield c
    finally:
        c.close()


def test_operator_killed_mid_admission_converges_without_over_admitting(
    cluster: operator_harness.Cluster, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": cluster.url}}],
        "users": [{"name": "t", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "t", "namespace": "default"}}],
    }))  # fmt: skip
    cluster.autonomy(enabled="true")
    for t in range(TARGETS):
        cluster.target(f"repo-{t}", maxConcurrentRuns=LIMIT)
    watch = JobWatch(cluster.url + kube.jobs())
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log")
    try:
        operator.start()
        for i in range(RUNS):
            cluster.run(f"run-{i:02d}", f"repo-{i % TARGETS}")

        finished: set[str] = set()
        kills = 0
        while len(finished) < RUNS:
            seen = watch.unsuspensions
            active = wait(lambda: [n for n in watch.active_jobs() if n not in finished], "an admitted Job")
            name = active[0]
            cluster.start_job(name)
            cluster.finish_job(name, ok=True)
            finished.add(name)
            if kills < KILLS and len(finished) in (2, 5, 8):
                # The operator now admits the next Run of that Target: kill it the moment it unsuspends a Job.
                wait(lambda seen=seen: watch.unsuspensions > seen, "the next admission")
                operator.kill9()
                kills += 1
                operator.start()

        assert kills == KILLS
        for i in range(RUNS):
            wait(lambda i=i: cluster.run_status(f"run-{i:02d}").get("phase") == "Succeeded", f"run-{i:02d} Succeeded")
        assert watch.peak, "the watch saw no admitted Jobs"
        assert max(watch.peak.values()) <= LIMIT, (
            f"over-admitted: peak admitted unfinished Jobs per Target {watch.peak}"
        )
    finally:
        watch.stop.set()
        operator.stop()
