"""``outrider store status`` and ``outrider store rebuild``, run beside a control plane on its database."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from outrider.control_plane import settings, store, tables
from outrider.control_plane.store.projector import Projector
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


def test_backup_copies_the_log_and_its_projections_as_a_pair_while_events_arrive(server: support.Server, tmp_path: Path) -> None:
    """``outrider store backup DIR`` while another client keeps posting: both files are copied (private), the copy's
    checkpoint is not past its last seq, the copy starts as a control plane's store without complaint, and once
    projected it holds the same run records as the original for every run it holds. It never overwrites a copy."""
    server.post(*support.run_events("cli-backup-1", "web"))
    stop = threading.Event()
    posted: list[int] = []

    def keep_posting() -> None:
        with httpx.Client(base_url=server.url, headers=server.client.headers, timeout=30) as client:
            while not stop.is_set():
                answer = client.post("/v1/events", json=support.run_events(f"cli-backup-bg-{len(posted)}", "api"),
                                     headers={"Content-Type": "application/cloudevents-batch+json"})
                assert answer.status_code == 202, answer.text
                posted.append(int(answer.json()["position"]))

    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        while len(posted) < 3:
            time.sleep(0.01)
        made = store_cli(server, "backup", str(tmp_path / "copy"))
    finally:
        stop.set()
        poster.join(timeout=60)
    assert made.returncode == 0, made.stderr
    server.post(*support.run_events("cli-backup-after", "web"))  # after the copy: not in it
    head = int(re.search(r"last seq (\d+)", made.stdout).group(1))  # type: ignore[union-attr]
    position = int(re.search(r"checkpoint at seq (\d+)", made.stdout).group(1))  # type: ignore[union-attr]
    assert 0 < position <= head
    copy = tmp_path / "copy"
    marks = set()
    for name in ("outrider.db", "outrider.db-projections"):
        assert stat.S_IMODE((copy / name).stat().st_mode) == 0o600
        with contextlib.closing(sqlite3.connect(copy / name)) as conn:
            marks.add(conn.execute("PRAGMA user_version").fetchone()[0])
    assert len(marks) == 1 and 0 not in marks  # the pair mark travels with the copy

    restored = store.Store(settings.Settings(database_url=f"sqlite:///{copy / 'outrider.db'}", api_tokens="t", projector_enabled=False))
    restored.open()  # no ProjectionsMismatch: the pair belongs together
    try:
        Projector(restored.engine).run_until_caught_up(timeout=60)
        assert restored.projection_status()["position"] == head == restored.log_head()
        copied = {run["run_id"]: run for run in restored.list_runs(limit=1000)}
    finally:
        restored.close()
    server.wait_projected(max(posted))
    original = {run["run_id"]: run for run in server.app.state.store.list_runs(limit=1000)}
    assert "cli-backup-1" in copied and "cli-backup-after" not in copied and "cli-backup-after" in original
    assert all(original[run_id] == record for run_id, record in copied.items())

    again = store_cli(server, "backup", str(copy))
    assert again.returncode == 1 and "exists: back up into an empty directory" in again.stderr


def test_backup_refuses_what_it_cannot_copy(tmp_path: Path) -> None:
    """A PostgreSQL store (pg_dump is its tool) and a SQLite file that does not exist: exit 1, the reason, nothing written."""
    target = tmp_path / "copy"
    for url, reason in (("postgresql://nobody@127.0.0.1:1/outrider", "back up PostgreSQL with pg_dump"),
                        (f"sqlite:///{tmp_path / 'missing' / 'outrider.db'}", "no SQLite database at")):
        refused = subprocess.run([*outrider_command(), "store", "backup", str(target)], capture_output=True, text=True,
                                 timeout=120, env=cli_env(OUTRIDER_DATABASE_URL=url))
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr
        assert not target.exists() and not (tmp_path / "missing").exists()
