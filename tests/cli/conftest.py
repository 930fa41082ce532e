"""CLI fixtures: a real control plane on 127.0.0.1 and a runner for the installed ``outrider`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.console import console_support as support


def outrider_command() -> list[str]:
    """The console script next to this Python, else ``python -m outrider.cli.main``."""
    script = Path(sys.executable).with_name("outrider")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "outrider.cli.main"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_") and k != "KUBECONFIG"}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **extra})
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[support.Server]:
    running = support.Server(tmp_path / "outrider.db")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cli(server: support.Server) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``outrider ARGS`` against ``server`` (URL and token from the environment, as users set them)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = cli_env(OUTRIDER_URL=server.url, OUTRIDER_TOKEN=support.TOKEN)
        return subprocess.run(
            [*outrider_command(), *args], capture_output=True, text=True, timeout=60, env={**base, **(env or {})}
        )

    return run
