"""Fixtures for the control plane: a real uvicorn on 127.0.0.1 against a real store, and a real PostgreSQL.

``api`` starts ``create_app`` under uvicorn in a thread on a free port, against a temporary SQLite
file or (parametrized) a fresh database on the session's PostgreSQL server, and hands an httpx client
with a valid token. ``postgres_server`` runs Debian's ``initdb`` + ``pg_ctl`` as the ``postgres`` user in
a temporary directory (unix socket there, TCP on a free port); where PostgreSQL is not installed the
postgres cases skip loudly (fail under OUTRIDER_REQUIRE_ALL=1).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from outrider.common import read_your_writes
from outrider.control_plane import app as app_module
from outrider.control_plane import server as cp_server
from outrider.control_plane import settings
from tests.conftest import free_port, missing, require_executable
from tests.control_plane import cp_support as support


class RunningServer:
    """A control plane served by uvicorn in a thread; ``stop()`` shuts it down and closes the store."""

    def __init__(self, config: settings.Settings) -> None:
        self.config = config
        self.app = app_module.create_app(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(cp_server.uvicorn_config(self.app, config, "127.0.0.1", self.port, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.02)
        # Reads see this client's own writes, as the CLI and worker SDK do (outrider.common.read_your_writes).
        self.session = read_your_writes.Session()
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {support.TOKEN}"}, timeout=30,
                                   event_hooks=self.session.hooks())
        self.anonymous = httpx.Client(base_url=self.url, timeout=30)

    def caught_up(self) -> None:
        """Wait until the projection covers everything in the log now (whichever client wrote it): before reading
        the registry directly, or projections after other clients' writes."""
        response = self.client.get("/v1/projection", headers={"Outrider-Min-Position": "0"})
        assert response.status_code == 200, response.text
        wanted = max(self.session.position, response.json()["head"])
        deadline = time.monotonic() + 30
        while response.json()["position"] < wanted:
            assert time.monotonic() < deadline, f"the projection did not reach {wanted}: {response.json()}"
            time.sleep(0.01)
            response = self.client.get("/v1/projection")

    @property
    def registry(self) -> Any:
        """The app's metrics registry, once the projection covers this client's writes (as /metrics would)."""
        self.caught_up()
        return self.app.state.metrics.registry

    def stop(self) -> None:
        self.client.close()
        self.anonymous.close()
        self.app.state.store.end_subscriptions()
        self.server.should_exit = True
        self.thread.join(timeout=30)


class PostgresServer:
    def __init__(self, root: Path, port: int, bindir: Path) -> None:
        self.root, self.port, self.bindir = root, port, bindir
        self._names = itertools.count(1)

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"outrider_test_{next(self._names)}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.root}&port={self.port}"


def _as_postgres(*command: str) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    runuser = shutil.which("runuser")
    if runuser is None:
        missing("runuser", "needed to run PostgreSQL as the postgres user when the tests run as root")
    return [str(runuser), "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server for the session (initdb + pg_ctl in a temporary directory)."""
    postgres = Path(require_executable("postgres", "/usr/lib/postgresql/*/bin/postgres"))
    bindir = postgres.parent
    root = Path(tempfile.mkdtemp(prefix="outrider-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            missing("postgres user", "the postgresql package creates it")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    data = root / "data"
    log = root / "server.log"
    init = subprocess.run(
        _as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"),
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        missing("postgresql", f"initdb failed: {init.stderr.strip()[-500:]}")
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off"
    start = subprocess.run(
        _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"),
        capture_output=True, text=True, timeout=90,
    )
    if start.returncode != 0:
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        missing("postgresql", f"pg_ctl start failed: {start.stderr.strip()[-300:]} {tail}")
    try:
        yield PostgresServer(root, port, bindir)
    finally:
        subprocess.run(_as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: a temporary SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outrider.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., settings.Settings]:
    def build(**overrides: Any) -> settings.Settings:
        values: dict[str, Any] = {"database_url": database_url, "api_tokens": support.TOKEN} | overrides
        return settings.Settings(**values)

    return build


@pytest.fixture
def make_sqlite_settings(tmp_path: Path) -> Callable[..., settings.Settings]:
    """Settings on a temporary SQLite file, for tests whose subject does not depend on the database."""

    def build(**overrides: Any) -> settings.Settings:
        values: dict[str, Any] = {"database_url": f"sqlite:///{tmp_path / 'outrider.db'}", "api_tokens": support.TOKEN}
        return settings.Settings(**(values | overrides))

    return build


@pytest.fixture
def start_server() -> Iterator[Callable[[settings.Settings], RunningServer]]:
    """Start control planes (stopped at the end of the test)."""
    started: list[RunningServer] = []

    def start(config: settings.Settings) -> RunningServer:
        server = RunningServer(config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def api(make_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> RunningServer:
    """A running control plane with default settings on a fresh store."""
    return start_server(make_settings())
