"""examples/worker.py (the worker in docs/worker-sdk.md) runs against a real control plane and its run
record shows what it reported: a succeeded run with usage, stages and a PR, and a failed one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.client.conftest import Servers

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "worker.py"


def run_example(server: Servers, token: str, run_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OUTRIDER_URL": server.url, "OUTRIDER_TOKEN": token, "OUTRIDER_RUN_ID": run_id,
                        "OUTRIDER_TARGET": "acme/web"}
    return subprocess.run([sys.executable, str(EXAMPLE), *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_example_worker_reports_a_run(server: Servers, token: str) -> None:
    done = run_example(server, token, "example-ok")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "emitted 17, delivered 17, dropped 0, rejected 0" in done.stdout
    record = server.run("example-ok")
    assert record["status"] == "succeeded" and record["pr_count"] == 1
    assert set(record["metrics"]["phase_timings"]) == {"plan", "code", "test"}
    assert record["llm_usage"]["by_model"]["anthropic/claude-sonnet-4"]["input_tokens"] == 40

    failed = run_example(server, token, "example-fail", "--fail")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    record = server.run("example-fail")
    assert (record["status"], record["error_type"], record["error_stage"]) == ("failed", "AssertionError", "test")
