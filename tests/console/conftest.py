"""Console fixtures: a real control plane per test (see support.Server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console import console_support as support


@pytest.fixture
def server(tmp_path: Path) -> Iterator[support.Server]:
    running = support.Server(tmp_path / "outrider.db")
    try:
        yield running
    finally:
        running.stop()
