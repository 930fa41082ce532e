"""A full or read-only database: 503 with a clear JSON error, readiness false, nothing half-written, recovery.

Both faults are real, made the way they happen, and work as root (where ``chmod`` stops nothing):

- full disk: the SQLite file lives on a small tmpfs (``mount -t tmpfs -o size=…``), filled to the last
  byte by a filler file; freeing the filler is the recovery;
- read-only: ``chattr +i`` on the database file and its WAL (the ``-shm`` index stays writable: an
  immutable mmap'd index kills the process with SIGBUS, which is a different fault).

Where the mechanism is unavailable (no CAP_SYS_ADMIN for mount, no chattr) the test skips loudly.
"""

from __future__ import annotations

import collections.abc
import contextlib
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from outrider.common import read_your_writes
from outrider.control_plane.store.engine import projections_file
from tests.conftest import counts, missing, require_executable
from tests.faults.conftest import HEADERS, all_stored_ids, progress_event

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 5.0


def batch(prefix: str, size: int, run_id: str) -> list[dict[str, Any]]:
    return [progress_event(f"{prefix}-{n}", run_id, n) for n in range(size)]


def wait_readiness(http: httpx.Client, ready: bool) -> dict[str, Any]:
    """Poll /readyz (short interval, bounded) until it says ``ready``; the last answer's body."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = http.get("/readyz")
        body = response.json()
        if body.get("ready") is ready and response.status_code == (200 if ready else 503):
            return body
        time.sleep(0.05)
    raise AssertionError(f"/readyz did not become ready={ready} within {READY_TIMEOUT_S} s; last: {body}")


@pytest.fixture
def small_disk(tmp_path: Path) -> collections.abc.Iterator[Path]:
    """A 16 MiB tmpfs mounted under tmp_path (unmounted afterwards)."""
    mount = require_executable("mount")
    target = tmp_path / "disk"
    target.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(target)], capture_output=True, text=True
    )
    if result.returncode != 0:
        missing(
            "tmpfs mount",
            f"cannot mount a small tmpfs to fill ({result.stderr.strip()}); needs root with CAP_SYS_ADMIN",
        )
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem refuses another byte; its path."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0")
    return filler


def assert_fault_then_recovery(server: Any, make_fault: Any, clear_fault: Any) -> None:
    # Reads see this client's own writes (run records are projections of the event log).
    session = read_your_writes.Session()
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30, event_hooks=session.hooks()) as http:
        first = batch("before", 50, "storage-run")
        response = http.post("/v1/events", json=first)
        assert response.status_code == 202, response.text
        wait_readiness(http, True)
        # Projected before the fault: the server is ready before its projector process has started, and a
        # projector cannot write on a full disk either.
        assert http.get("/v1/runs/storage-run").json()["event_count"] == len(first)

        make_fault()
        refused = batch("during", 500, "storage-run")
        response = http.post("/v1/events", json=refused)
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["error"] == "store_unavailable"
        assert body["message"]
        not_ready = wait_readiness(http, False)
        assert not_ready["detail"], "readiness must say why it is not ready"

        # Nothing half-written: only the events acknowledged before the fault are visible.
        assert sorted(all_stored_ids(http)) == sorted(e["id"] for e in first)
        run = http.get("/v1/runs/storage-run").json()
        assert run["event_count"] == len(first)

        clear_fault()
        wait_readiness(http, True)  # recovers on its own, without needing a write first
        response = http.post("/v1/events", json=refused)
        assert response.status_code == 202, response.text
        assert counts(response) == {"accepted": len(refused), "duplicates": 0}
        assert sorted(all_stored_ids(http)) == sorted(e["id"] for e in first + refused)
        assert http.get("/v1/runs/storage-run").json()["event_count"] == len(first) + len(refused)
    server.stop()
    for path in (server.db_path, projections_file(server.db_path)):  # the log's file and the projections'
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path


def test_full_disk_answers_503_and_recovers(control_plane_process: Any, small_disk: Path) -> None:
    server = control_plane_process(small_disk).start()
    filler: list[Path] = []
    try:
        assert_fault_then_recovery(
            server,
            make_fault=lambda: filler.append(fill(small_disk)),
            clear_fault=lambda: filler[0].unlink(),
        )
    finally:
        server.stop()


def test_read_only_database_answers_503_and_recovers(control_plane_process: Any, tmp_path: Path) -> None:
    chattr = shutil.which("chattr")
    if chattr is None:
        missing("chattr", "e2fsprogs' chattr makes the database immutable even for root")
    folder = tmp_path / "db"
    folder.mkdir()
    probe = folder / "probe"
    probe.write_text("x")
    if subprocess.run([chattr, "+i", str(probe)], capture_output=True).returncode != 0:
        missing("chattr +i", "the filesystem or the capabilities (CAP_LINUX_IMMUTABLE) do not allow immutable files")
    subprocess.run([chattr, "-i", str(probe)], check=True)
    server = control_plane_process(folder).start()
    files = [folder / "outrider.db", folder / "outrider.db-wal"]

    def protect() -> None:
        for path in files:
            subprocess.run([chattr, "+i", str(path)], check=True)

    def release() -> None:
        for path in files:
            subprocess.run([chattr, "-i", str(path)], capture_output=True)

    try:
        assert_fault_then_recovery(server, make_fault=protect, clear_fault=release)
    finally:
        release()
        server.stop()
