"""Fixtures shared by the whole suite.

``require(...)`` is the one way a test says it needs a system component (PostgreSQL, promtool,
Chromium, kubectl…). Where the component is missing the test is skipped with a loud, named reason;
under ``OUTRIDER_REQUIRE_ALL=1`` (set by ``.ci/run``) the same situation fails instead, because CI must
skip nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ALL = os.environ.get("OUTRIDER_REQUIRE_ALL") == "1"


def missing(component: str, why: str) -> None:
    """Skip (or, in CI, fail) because ``component`` is not available; ``why`` says how to get it."""
    message = f"COMPONENT MISSING: {component} — {why} (run `make deps`)"
    if REQUIRE_ALL:
        pytest.fail(message + "; OUTRIDER_REQUIRE_ALL=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def require_executable(name: str, *candidates: str) -> str:
    """Path of an executable, looked up on PATH and then in ``candidates``; skips/fails loudly when absent."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in candidates:
        for path in sorted(Path("/").glob(candidate.lstrip("/"))):
            if os.access(path, os.X_OK):
                return str(path)
    missing(name, f"executable '{name}' not found")
    raise AssertionError("unreachable")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for a test's artefacts (screenshots, logs) under ./test-output/<test name>/."""
    path = Path("test-output") / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


def counts(response: Any) -> dict[str, int]:
    """``{accepted, duplicates}`` of an ingestion answer, after checking it also carries the log position
    (an integer, also in the Outrider-Position header) whenever it acknowledged an event."""
    body = response.json()
    if body["accepted"] or body["duplicates"]:
        assert isinstance(body["position"], int) and body["position"] >= 1, body
        assert response.headers["Outrider-Position"] == str(body["position"])
    return {"accepted": body["accepted"], "duplicates": body["duplicates"]}
