"""`kubectl get runs/targets` columns read what the operator writes (kubectl against KMock, CRD's own JSONPaths).

KMock builds no server-side Tables, so the columns are requested as custom-columns made from the CRD's
``additionalPrinterColumns`` — the same JSONPaths a real API server evaluates for `kubectl get`.
"""

from __future__ import annotations

import subprocess

import operator_crd_schema as crds
from operator_harness import Cluster, Operator, wait_for

from tests.conftest import require_executable


def columns(kind: str) -> str:
    (version,) = crds.load_crd(kind)["spec"]["versions"]
    return ",".join(f"{c['name'].upper()}:{c['jsonPath']}" for c in version["additionalPrinterColumns"]
                    if c["jsonPath"] != ".metadata.creationTimestamp")


def kubectl(env: dict[str, str], *args: str) -> list[str]:
    binary = require_executable("kubectl", "/usr/bin/kubectl")
    result = subprocess.run([binary, "--kubeconfig", env["KUBECONFIG"], *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.strip().splitlines()]


def test_kubectl_shows_the_operator_status_in_the_printer_columns(cluster: Cluster, operator: Operator,
                                                                  operator_env: dict[str, str]) -> None:
    require_executable("kubectl", "/usr/bin/kubectl")
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", annotations={"outrider.dev/open-prs": "1"})
    operator.start()
    cluster.run("r1", "repo-a")
    wait_for(lambda: (cluster.job("r1") or {}).get("spec", {}).get("suspend") is False)
    cluster.job_status("r1", {"active": 1, "startTime": "2026-01-01T10:00:00Z"})
    cluster.job_status("r1", {"active": 0, "failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T10:00:42Z"}]})
    wait_for(lambda: cluster.run_status("r1").get("breakerRecorded"))
    header, row = kubectl(operator_env, "get", "runs.outrider.dev", "r1", "-o", f"custom-columns={columns('Run')}")
    got = dict(zip(header, row, strict=True))
    assert got["TARGET"] == "repo-a" and got["PHASE"] == "Failed" and got["DURATION"] == "42"
    assert got["REASON"] == "BackoffLimitExceeded" and got["JOB"] == "r1"
    assert got["TOKENS"] == "<none>" and got["COST"] == "<none>"  # the agent reported no usage: shown as missing
    assert (got["ADMITTED"], got["SUCCEEDED"]) == ("True", "False")  # read off the conditions
    header, row = wait_for(lambda: (out := kubectl(operator_env, "get", "targets.outrider.dev", "repo-a", "-o",
                                                   f"custom-columns={columns('Target')}")) and out[1][0] == "Idle" and out)
    got = dict(zip(header, row, strict=True))
    assert (got["HEALTH"], got["BREAKER"], got["FAILURES"], got["ACTIVE"], got["OPEN-PRS"], got["REASON"]) == (
        "Idle", "Closed", "1", "0", "1", "NoRuns")
    assert (got["ADMITTING"], got["READY"]) == ("True", "True")
