"""Fixtures for fault tests: the control plane as a real ``outrider control-plane`` subprocess.

A subprocess (not a thread) because the faults are process-level: ``kill -9`` must take the store's
writer down mid-commit exactly as a crash would. The process serves a SQLite file the test owns, with
a known token from ``OUTRIDER_API_TOKENS``; readiness is polled on ``/readyz`` with short intervals and a
bounded timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

TOKEN = "fault-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]


class ControlPlaneProcess:
    """``outrider control-plane`` on a SQLite file; restartable on the same file and port."""

    def __init__(self, db_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.db_path = db_path
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> ControlPlaneProcess:
        env = {
            **os.environ,
            "OUTRIDER_DATABASE_URL": f"sqlite:///{self.db_path}",
            "OUTRIDER_API_TOKENS": TOKEN,
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "outrider.cli.main",
                    "control-plane",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=env,
                cwd=self.db_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"control plane exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"control plane not ready within {timeout_s} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown handlers, no final commit — a crash."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def writer_pid(self) -> int:
        """The pid of the store's writer process (the server's only child)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, f"expected one writer process, found children {children}"
        return int(children[0])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def control_plane_process(tmp_path: Path) -> Iterator[Any]:
    """A factory of control-plane subprocesses (stopped at the end of the test): ``factory(db_dir)``."""
    started: list[ControlPlaneProcess] = []

    def make(db_dir: Path | None = None, env: dict[str, str] | None = None) -> ControlPlaneProcess:
        folder = db_dir or tmp_path
        process = ControlPlaneProcess(folder / "outrider.db", tmp_path / "control-plane.log", env)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


def process_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Whether ``pid`` exits (or is left a zombie for init to reap) within ``timeout_s``, polled every 20 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat[stat.rindex(")") + 2] == "Z":
            return True
        time.sleep(0.02)
    return False


def progress_event(event_id: str, run_id: str, iteration: int, target: str = "org/faults") -> dict[str, Any]:
    """One valid ``run.progress`` event."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "/tests/faults",
        "type": "run.progress",
        "time": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=iteration)).isoformat(),
        "target": target,
        "runid": run_id,
        "data": {"stage": "code", "iteration": iteration},
    }


def all_stored_ids(client: httpx.Client) -> list[str]:
    """Every stored event's id, following ``next_cursor`` through the whole history."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(10_000):
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        response = client.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids.extend(item["event"]["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")
