"""Fixtures for the worker SDK: real control planes (uvicorn on 127.0.0.1, temporary SQLite) that can be
stopped and started again on the same port and database, to play an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from outrider.control_plane import app as app_module
from outrider.control_plane import server as cp_server
from outrider.control_plane import settings
from tests.conftest import free_port
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


class FixedPortServer(RunningServer):
    """A RunningServer on a chosen port, so a restarted server answers at the same URL."""

    def __init__(self, config: settings.Settings, port: int) -> None:
        self.config = config
        self.app = app_module.create_app(config)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(cp_server.uvicorn_config(self.app, config, "127.0.0.1", port, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {support.TOKEN}"}, timeout=30)
        self.anonymous = httpx.Client(base_url=self.url, timeout=30)


class Servers:
    """Start/stop control planes on one SQLite file and one port."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = settings.Settings(database_url=f"sqlite:///{tmp_path / 'outrider.db'}", api_tokens=support.TOKEN)
        self.current: FixedPortServer | None = None

    def start(self) -> FixedPortServer:
        assert self.current is None
        self.current = FixedPortServer(self.config, self.port)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None

    def run(self, run_id: str, position: int | None = None) -> dict[str, Any]:
        """The run record once the projection covers ``position`` (default: everything in the log so far)."""
        assert self.current is not None
        if position is None:
            position = self.current.client.get("/v1/projection").json()["head"]
        response = self.current.client.get(f"/v1/runs/{run_id}", params={"min_position": position})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def events(self, run_id: str) -> list[dict[str, Any]]:
        assert self.current is not None
        response = self.current.client.get("/v1/events", params={"run_id": run_id, "limit": 1000})
        assert response.status_code == 200, response.text
        return [item["event"] for item in response.json()["items"]]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    found = Servers(tmp_path)
    yield found
    found.stop()


@pytest.fixture
def server(servers: Servers) -> Servers:
    """A running control plane (``servers`` with one started)."""
    servers.start()
    return servers


@pytest.fixture
def token() -> str:
    return support.TOKEN

