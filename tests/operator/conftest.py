"""Fixtures for the operator tests: a KMock cluster, the operator's environment, and the operator itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from operator_harness import Cluster, Operator, wait_for

from outrider.common import k8s
from tests.conftest import free_port

#: The admin token of the ``control_plane`` fixture.
CONTROL_PLANE_TOKEN = "operator-tests-control-plane-token"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def operator_env(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for an operator talking to ``cluster``; tests may add OUTRIDER_URL etc. before starting it."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": cluster.url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": "default"}}],
    }))
    env = {
        "KUBECONFIG": str(kubeconfig),
        "OUTRIDER_NAMESPACE": "default",
        "OUTRIDER_AUTONOMY_CONFIGMAP": k8s.AUTONOMY_CONFIGMAP_DEFAULT,
        "OUTRIDER_METRICS_PORT": str(free_port()),
        "OUTRIDER_METRICS_HOST": "127.0.0.1",
        "OUTRIDER_HEARTBEAT_SECONDS": "0.5",
    }
    for key in ("OUTRIDER_URL", "OUTRIDER_TOKEN", "OUTRIDER_RUN_SIGNING_KEY_FILE", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def operator(operator_env: dict[str, str]) -> Iterator[Operator]:
    """A started operator; stopped after the test."""
    op = Operator(operator_env)
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[str]:
    """A real control plane (uvicorn in a thread, SQLite) for the operator to post to and ask; its URL. Its one
    token is ``CONTROL_PLANE_TOKEN`` (admin)."""
    from outrider.control_plane import app as app_module
    from outrider.control_plane import server as cp_server
    from outrider.control_plane import settings as cp_settings

    config = cp_settings.Settings(database_url=f"sqlite:///{tmp_path / 'cp.db'}", api_tokens=CONTROL_PLANE_TOKEN)
    port = free_port()
    server = uvicorn.Server(cp_server.uvicorn_config(app_module.create_app(config), config, "127.0.0.1", port, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="control plane started")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
