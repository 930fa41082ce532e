"""`make e2e-kind` skips loudly and successfully where docker or kind is missing (it must never pretend to
have run), and the script is valid bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.chart import chart_support as support

SCRIPT = support.ROOT / "scripts" / "e2e-kind.sh"


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, timeout=30).returncode == 0


def test_skips_without_docker_and_kind(tmp_path: Path) -> None:
    # An empty PATH: neither docker nor kind can be found, whatever this machine has installed.
    result = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                            env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("skipped: needs docker and kind")
