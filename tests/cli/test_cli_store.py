"""``outrider store status`` and ``outrider store rebuild``, run beside a control plane on its database."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from outrider.control_plane import tables
from tests.cli.conftest import cli_env, outrider_command
from tests.console import console_support as support


def store_cli(server: support.Server, *args: str) -> subprocess.CompletedProcess[str]:
    url = str(server.app.state.store.engine.url)
    return subprocess.run([*outrider_command(), "store", *args], capture_output=True, text=True, timeout=120,
                          env=cli_env(OUTRIDER_DATABASE_URL=url))


def runs_table(server: support.Server) -> list[tuple[Any, ...]]:
    with server.app.state.store.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.select(tables.runs)))


def test_status_and_rebuild_give_back_the_same_records(server: support.Server, cli: Callable[..., Any]) -> None:
    server.post(*support.run_events("cli-store-1", "web"), *support.run_events("cli-store-2", "api", outcome="failed"))
    status = store_cli(server, "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert found["position"] == found["head"] > 0 and found["lag_events"] == 0 and found["holder"]
    before = runs_table(server)
    rebuilt = store_cli(server, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"from {found['head']} log events" in rebuilt.stdout
    assert runs_table(server) == before
    shown = cli("runs", "show", "cli-store-2", "--format", "json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "failed"


def test_rebuild_refuses_a_swept_log_without_force(server: support.Server) -> None:
    server.post(*support.run_events("cli-store-3", "web"))
    with server.app.state.store.engine.begin() as conn:
        conn.execute(sa.update(tables.projector_state).values(swept_through=1))
    refused = store_cli(server, "rebuild")
    assert refused.returncode == 1 and "retention sweep deleted events up to seq 1" in refused.stderr
    assert "--force" in refused.stderr
    assert store_cli(server, "rebuild", "--force").returncode == 0
