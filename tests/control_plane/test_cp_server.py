"""``outrider control-plane`` as a process: a token is generated on first start (mode 0600 file next to the
database), printed, reused on the next start, and the API answers with it."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from outrider.control_plane import server, settings
from tests.conftest import free_port


def test_token_is_generated_once_and_reused(tmp_path: Path) -> None:
    config = settings.Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'outrider.db'}")
    first, token = server.ensure_token(config)
    path = tmp_path / "data" / "outrider.token"
    assert first.api_token_file == path
    assert token and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, token_again = server.ensure_token(config)
    assert token_again == token and again.tokens() == [token]


def test_configured_tokens_are_used_as_they_are(tmp_path: Path) -> None:
    config = settings.Settings(database_url=f"sqlite:///{tmp_path / 'outrider.db'}", api_tokens="a, b,,")
    same, token = server.ensure_token(config)
    assert token is None and same.tokens() == ["a", "b"]
    assert not (tmp_path / "outrider.token").exists()


def test_control_plane_command_serves_with_the_printed_token(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTRIDER_")}
    env["OUTRIDER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'outrider.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "outrider.cli.main", "control-plane", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                raise AssertionError("the control plane exited")
            match = re.search(r"API token \(kept in .*\): (\S+)", line)
            token = match.group(1) if match else None
        assert token, "no token printed"
        url = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/v1/runs", headers=headers).status_code == 200
        assert httpx.get(f"{url}/v1/runs").status_code == 401
        assert (tmp_path / "outrider.token").read_text().strip().endswith(token)
    finally:
        process.terminate()
        process.wait(timeout=30)
