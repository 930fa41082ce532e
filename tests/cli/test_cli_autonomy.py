"""``outrider autonomy pause|resume|stop`` against a Kubernetes API emulator (KMock) over real HTTP.

The CLI runs as a subprocess with a kubeconfig pointing at KMock on 127.0.0.1 (nothing in the kubernetes
client is patched); the test then reads the ConfigMap back through the API, as the operator would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from outrider.common import k8s
from tests.cli.conftest import cli_env, outrider_command

NAMESPACE = "outrider-system"
CONFIGMAP_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{k8s.AUTONOMY_CONFIGMAP_DEFAULT}"


def write_kubeconfig(path: Path, server: str, namespace: str | None = NAMESPACE) -> Path:
    ns = f", namespace: {namespace}" if namespace else ""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: kmock, cluster: {{server: "{server}"}}}}]\n'
        "users: [{name: tester, user: {token: any-token}}]\n"
        f"contexts: [{{name: test, context: {{cluster: kmock, user: tester{ns}}}}}]\n"
        "current-context: test\n",
        encoding="utf-8",
    )
    return path


async def outrider(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop that serves KMock."""
    process = await asyncio.create_subprocess_exec(
        *outrider_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**cli_env(), **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def configmap(kmock: Any) -> dict[str, Any]:
    response = await kmock.get(CONFIGMAP_PATH)
    assert response.status == 200
    return dict(await response.json())


@pytest.fixture
def kubeconfig(kmock: Any, tmp_path: Path) -> Path:
    kmock.resources.load_bundled()
    return write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))


async def test_pause_creates_the_configmap_and_confirms(kmock: Any, kubeconfig: Path) -> None:
    code, out, err = await outrider("autonomy", "pause", "--reason", "incident 42", "--kubeconfig", str(kubeconfig),
                                    "--format", "json")
    assert code == 0, err
    reported = json.loads(out)
    assert reported == {"namespace": NAMESPACE, "name": "outrider-autonomy", "enabled": False, "mode": "hold",
                        "reason": "incident 42", "created": True, "resource_version": reported["resource_version"]}
    held = await configmap(kmock)
    assert held["data"] == {"enabled": "false", "mode": "hold", "reason": "incident 42"}


async def test_resume_and_stop_patch_an_existing_configmap_keeping_other_keys(kmock: Any, kubeconfig: Path) -> None:
    created = await kmock.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", json={
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "outrider-autonomy", "namespace": NAMESPACE},
        "data": {"enabled": "false", "mode": "hold", "reason": "set by hand", "team-note": "keep me"},
    })
    assert created.status in (200, 201)

    code, out, err = await outrider("autonomy", "resume", "--kubeconfig", str(kubeconfig))
    assert code == 0, err
    assert "Autonomy is now enabled" in out and "updated" in out
    held = (await configmap(kmock))["data"]
    assert held["enabled"] == "true" and held["mode"] == "hold" and held["team-note"] == "keep me"
    assert held["reason"].startswith("resumed by ")

    code, out, err = await outrider("autonomy", "stop", "-r", "runaway agent", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert code == 0, err
    assert json.loads(out)["mode"] == "drain" and json.loads(out)["enabled"] is False
    held = (await configmap(kmock))["data"]
    assert held == {"enabled": "false", "mode": "drain", "reason": "runaway agent", "team-note": "keep me"}
    code, out, err = await outrider("autonomy", "stop", "-r", "still running away", "--kubeconfig", str(kubeconfig))
    assert code == 0, err
    assert "Autonomy is now STOPPED (emergency stop: running Jobs suspended)" in out and "(mode" not in out  # said once


async def test_namespace_and_name_from_flags_and_environment(kmock: Any, tmp_path: Path) -> None:
    kmock.resources.load_bundled()
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"), namespace=None)
    code, out, err = await outrider("autonomy", "pause", "-o", "json",
                                    env={"KUBECONFIG": str(config), "OUTRIDER_NAMESPACE": "team-a",
                                         "OUTRIDER_AUTONOMY_CONFIGMAP": "agents-switch"})
    assert code == 0, err
    assert (json.loads(out)["namespace"], json.loads(out)["name"]) == ("team-a", "agents-switch")
    response = await kmock.get("/api/v1/namespaces/team-a/configmaps/agents-switch")
    assert response.status == 200 and (await response.json())["data"]["enabled"] == "false"
    code, out, err = await outrider("autonomy", "resume", "--namespace", "team-b", "--kubeconfig", str(config), "-o", "json")
    assert code == 0 and json.loads(out)["namespace"] == "team-b" and json.loads(out)["name"] == "outrider-autonomy"


async def test_unreachable_kubernetes_api_exits_3(tmp_path: Path) -> None:
    from tests.conftest import free_port

    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    code, out, err = await outrider("autonomy", "pause", "--kubeconfig", str(config))
    assert code == 3 and out == ""
    assert "cannot reach the Kubernetes API" in err
    code, _, err = await outrider("autonomy", "pause", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 3 and "kubeconfig" in err
