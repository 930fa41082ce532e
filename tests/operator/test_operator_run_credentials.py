"""Per-run credentials end to end: the operator on KMock admits a Run, creates its credential Secret and mounts it
into the Job; with that credential a worker (the SDK reading the mounted file) writes its run's events to a real
control plane, and nothing else: not another run, not a control event, not another namespace, and not after
the run finished (plus the grace period)."""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from operator_harness import Cluster, Operator, wait_for

from outrider import client as sdk
from outrider.common import credentials
from outrider.operator import kube, run_credentials
from tests.conftest import free_port

ADMIN = "admin-token-for-run-credential-tests"
OPERATOR = "operator-token-for-run-credential-tests"


class ControlPlane:
    def __init__(self, tmp_path: Path, keys_file: Path) -> None:
        from outrider.control_plane import app as app_module
        from outrider.control_plane import settings as cp_settings

        config = cp_settings.Settings(database_url=f"sqlite:///{tmp_path / 'cp.db'}", api_tokens=ADMIN,
                                      operator_tokens=OPERATOR, run_signing_keys_file=keys_file,
                                      run_credential_grace_seconds=0)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app_module.create_app(config), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, what="control plane started")
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "run-signing-key"
    path.write_text(secrets.token_urlsafe(48) + "\n")
    return path


@pytest.fixture
def control_plane(tmp_path: Path, keys_file: Path) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path, keys_file)
    try:
        yield cp
    finally:
        cp.stop()


def _event(kind: str, run: str, namespace: str | None = None, **data: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": secrets.token_hex(8), "source": "/workers/agent", "type": kind,
             "time": "2026-06-01T00:00:00Z", "runid": run, "data": data}
    if namespace:
        event["namespace"] = namespace
    return event


def test_an_admitted_runs_credential_writes_its_run_and_nothing_else(
        cluster: Cluster, operator_env: dict[str, str], control_plane: ControlPlane, keys_file: Path, tmp_path: Path) -> None:
    env = {**operator_env, "OUTRIDER_URL": control_plane.url, "OUTRIDER_TOKEN": OPERATOR,
           "OUTRIDER_RUN_SIGNING_KEY_FILE": str(keys_file)}
    op = Operator(env).start()
    try:
        cluster.autonomy(enabled="true")
        cluster.target("web", maxConcurrentRuns=2)
        cluster.run("web-1", "web")
        cluster.run("web-2", "web")
        job = wait_for(lambda: (j := cluster.job("web-1")) and j["spec"].get("suspend") is False and j, what="web-1 admitted")

        # The Job mounts the run's Secret and says where the token is; no token sits in the spec itself.
        pod = job["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == run_credentials.VOLUME]
        assert volume["secret"]["secretName"] == "web-1-outrider-token"
        container = pod["containers"][0]
        env_vars = {item["name"]: item.get("value") for item in container["env"]}
        assert env_vars[credentials.TOKEN_FILE_ENV] == credentials.TOKEN_FILE
        assert env_vars[credentials.RUN_NAMESPACE_ENV] == "default"
        assert {"name": run_credentials.VOLUME, "mountPath": credentials.TOKEN_MOUNT_DIR, "readOnly": True} in container["volumeMounts"]
        assert "ort1." not in str(job)
        secret = cluster.get(kube.secrets("default", "web-1-outrider-token"))
        assert secret is not None and secret["metadata"]["ownerReferences"][0]["kind"] == "Run"
        token = base64.b64decode(secret["data"]["token"]).decode()
        assert token.startswith("ort1.")

        # The worker SDK picks the credential up from the mounted file, with no code change.
        token_file = tmp_path / "token"
        token_file.write_text(token)
        worker_env = {credentials.TOKEN_FILE_ENV: str(token_file), credentials.RUN_NAMESPACE_ENV: "default"}
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("OUTRIDER_TOKEN", raising=False)
            for name, value in worker_env.items():
                patch.setenv(name, value)
            with sdk.Client(control_plane.url, flush_interval=0.05) as worker:
                worker.run("web-1", "web").log("info", "hello from the pod")
                assert worker.flush(timeout=30)
                assert worker.stats().delivered == 1 and worker.stats().rejected == 0
        logs = control_plane.admin.get("/v1/runs/web-1/logs").json()["items"]
        assert [line["message"] for line in logs] == ["hello from the pod"]

        as_run = httpx.Client(base_url=control_plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert as_run.post("/v1/events", json=_event("run.log", "web-1", level="info", message="ok")).status_code == 202
        for refused in (_event("run.log", "web-2", level="info", message="not mine"),
                        _event("run.log", "web-1", namespace="team-b", level="info", message="other tenant"),
                        {**_event("autonomy.changed", "web-1", enabled=True), "runid": None},
                        {**_event("operator.heartbeat", "web-1", autonomy_enabled=True, heartbeat_seconds=30)}):
            response = as_run.post("/v1/events", json={k: v for k, v in refused.items() if v is not None})
            assert response.status_code == 403, (refused["type"], response.text)
        assert as_run.get("/v1/runs").status_code == 403  # a run credential reads nothing

        # The run finishes (its Job succeeds): with no grace period, the credential is refused from then on.
        cluster.start_job("web-1")
        cluster.finish_job("web-1", ok=True)
        wait_for(lambda: control_plane.admin.get("/v1/runs/web-1").json()["status"] == "succeeded", what="run recorded as finished")
        late = wait_for(lambda: (r := as_run.post("/v1/events", json=_event("run.log", "web-1", level="info", message="late")))
                        .status_code == 401 and r, what="credential ended")
        assert "finished" in late.json()["message"]
    finally:
        op.stop()


def test_without_a_signing_key_jobs_get_no_credential(cluster: Cluster, operator: Operator) -> None:
    operator.start()
    cluster.autonomy(enabled="true")
    cluster.target("web")
    cluster.run("plain-1", "web")
    job = wait_for(lambda: (j := cluster.job("plain-1")) and j["spec"].get("suspend") is False and j, what="admitted")
    assert "volumes" not in job["spec"]["template"]["spec"] or not any(
        v["name"] == run_credentials.VOLUME for v in job["spec"]["template"]["spec"]["volumes"])
    assert cluster.get(kube.secrets("default", "plain-1-outrider-token")) is None
