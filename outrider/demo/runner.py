"""The demo's parts wired together: :class:`Demo` starts KMock, the control plane, the operator and the driver."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NAMESPACE = "outrider-demo"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ControlPlane:
    """The control plane (with the console's DEMO banner) under uvicorn in a thread."""

    def __init__(self, database: Path, token: str, host: str, port: int) -> None:
        import uvicorn

        from outrider.control_plane import app as app_module
        from outrider.control_plane import server, settings

        config = settings.Settings(database_url=f"sqlite:///{database}", api_tokens=token, sse_keepalive_seconds=5)
        self.app = app_module.create_app(config)
        self.app.state.demo = True
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(server.uvicorn_config(self.app, config, host, port, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="demo-control-plane", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class Operator:
    """The real operator (``outrider.operator.main.serve``, as ``outrider operator`` runs it) in a thread."""

    def __init__(self) -> None:
        from outrider.operator import main as operator_main

        self.stop_flag = threading.Event()
        ready = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                asyncio.run(operator_main.serve(standalone=True, stop_flag=self.stop_flag, ready_flag=ready))
            except BaseException as exc:  # reported below
                self.error = exc

        self.thread = threading.Thread(target=run, name="demo-operator", daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"the operator did not start: {self.error!r}")

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(20)


def banner(url: str, token: str, kubeconfig: Path) -> str:
    line = "=" * 78
    return f"""
{line}
  OUTRIDER DEMO — simulated Targets, Runs and agents; nothing here is production data.
{line}
  Console   {url}/            (sign in with the token below)
  API token {token}
  API       {url}/openapi.json

  In another terminal, the CLI sees the same system:
    export OUTRIDER_URL={url} OUTRIDER_TOKEN={token}
    export KUBECONFIG={kubeconfig} OUTRIDER_NAMESPACE={NAMESPACE}
    .venv/bin/outrider status
    .venv/bin/outrider runs list --since 1h
    .venv/bin/outrider autonomy pause --reason "trying the kill switch"   # then: autonomy resume

  What to watch: runs flowing on docs-site, payments-api failing until its circuit
  breaker trips (Blocked, cooldown countdown, then a half-open probe), web-frontend
  reaching its open-PR limit until a PR is merged.  Ctrl-C stops everything.
{line}
"""




class Demo:
    """Everything of ``make demo``; :meth:`stop` undoes :meth:`start` in reverse order."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, seed: int | None = None,
                 driver_options: dict[str, Any] | None = None, heartbeat_seconds: float = 3.0) -> None:
        self.host = host
        self.port = port if port is not None and _port_free(host, port) else _free_port(host)
        self.seed = seed
        self.driver_options = driver_options or {}
        self.heartbeat_seconds = heartbeat_seconds
        self.workdir = Path(tempfile.mkdtemp(prefix="outrider-demo-"))
        self.token = "demo-" + secrets.token_urlsafe(12)
        self.parts: list[Any] = []
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig"

    def start(self) -> Demo:
        from outrider.demo import cluster as cluster_module
        from outrider.demo import driver as driver_module

        cluster = cluster_module.Cluster()
        self.parts.append(cluster)
        cluster.write_kubeconfig(self.kubeconfig, NAMESPACE)
        control_plane = ControlPlane(self.workdir / "outrider-demo.db", self.token, self.host, self.port)
        self.parts.append(control_plane)
        self.url = control_plane.url
        os.environ.update({
            "KUBECONFIG": str(self.kubeconfig), "OUTRIDER_NAMESPACE": NAMESPACE, "OUTRIDER_URL": control_plane.url,
            "OUTRIDER_TOKEN": self.token, "OUTRIDER_HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            "OUTRIDER_METRICS_PORT": "0",
        })
        os.environ.pop("KUBERNETES_SERVICE_HOST", None)
        driver = driver_module.Driver(cluster.url, control_plane.url, self.token, NAMESPACE, seed=self.seed,
                                      **self.driver_options)
        driver.setup()
        self.operator = Operator()
        self.parts.append(self.operator)
        driver.start()
        self.parts.append(driver)
        return self

    def stop(self) -> None:
        for part in reversed(self.parts):
            try:
                part.stop() if hasattr(part, "stop") else part.close()
            except Exception as exc:  # shutting down: report, keep going
                logging.getLogger("outrider.demo").warning("while stopping %s: %r", type(part).__name__, exc)
        self.parts.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
