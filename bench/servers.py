"""Servers under test, each a subprocess on 127.0.0.1: the two baselines and the real control plane.

A server is started, polled until its health endpoint answers (bounded), and stopped with SIGTERM
(then SIGKILL after a bound). Its stderr goes to a log file that is printed when it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    """A server did not start; the message carries the tail of its log."""


@dataclass
class Server:
    """One running server process and how to reach it."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/healthz"
    #: Where it runs: ``python -m`` imports from there first (a copy of older code runs from its own directory).
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30.0) -> Server:
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}{self.health_path}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not answer {url} within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_mb(self) -> dict[str, float | None]:
        """Current and peak resident memory of the process, from /proc (MB)."""
        found: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found["rss_mb"] = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    found["peak_rss_mb"] = int(line.split()[1]) / 1024
        except OSError:
            pass
        return found


def baseline(kind: str, token: str, workdir: Path) -> Server:
    """A baseline server (not started): ``noop`` or ``ndjson`` (appending to workdir/events.ndjson)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.serve", kind, "--port", str(port), f"--token={token}"]  # "=": a generated token may begin with "-"
    if kind == "ndjson":
        argv += ["--path", str(workdir / "events.ndjson")]
    return Server(name=kind, argv=argv, port=port, log_path=workdir / f"{kind}.log")


def control_plane(
    name: str, token: str, database_url: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> Server:
    """The real control plane as shipped, ``outrider control-plane``, on the given store (not started)."""
    port = free_port()
    argv = [sys.executable, "-m", "outrider.cli.main", "control-plane", "--host", "127.0.0.1", "--port", str(port)]
    env = {
        "OUTRIDER_DATABASE_URL": database_url,
        "OUTRIDER_API_TOKENS": token,
        # Throughput is measured, not the per-key policy: one bench token sends what a whole fleet would.
        "OUTRIDER_KEY_REQUESTS_PER_SECOND": "0",
        "OUTRIDER_KEY_INGEST_BYTES_PER_SECOND": "0",
        **(extra_env or {}),
    }
    return Server(name=name, argv=argv, port=port, log_path=workdir / f"{name}.log", env=env, health_path="/readyz")


#: The control plane before the event log and its projector (issue 14): the last commit (parent of b78c550) whose
#: ``POST /v1/events`` folded every event into its run record in the request's own transaction. Its batched rate is
#: the issue's "today's batched rate", measured in the same run by ``bench.projection_bench``.
BEFORE_LOG_COMMIT = "d754dbc0996efc8344219b6323b07cfb97433772"


def before_log(token: str, database_url: str, workdir: Path) -> Server | str:
    """That control plane (not started), run from a copy of its ``outrider`` package taken from git with this
    checkout's Python environment; or why it cannot be had (no git, a clone without that commit)."""
    source = workdir / "before-log-source"
    if not (source / "outrider").is_dir():
        try:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_LOG_COMMIT, "outrider"],
                                     capture_output=True, check=False, timeout=120)
        except OSError as exc:
            return f"git is not available ({exc})"
        if archive.returncode != 0:
            return f"git archive {BEFORE_LOG_COMMIT[:12]} failed: {archive.stderr.decode(errors='replace').strip()[:300]}"
        source.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True, timeout=120)
    server = control_plane("sqlite-before-log", token, database_url, workdir, {"PYTHONPATH": str(source)})
    server.cwd = source
    return server


def children(pid: int) -> list[int]:
    """The running children of a process, from /proc (listed under the thread that made each)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += map(int, (task / "children").read_text().split())
    return found


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of one process (all its threads, not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time so far of a process (all its threads) and of its running descendants (the control
    plane's store writer process and that one's projector process), from /proc; None if unreadable."""
    try:
        total, pending = 0.0, [pid]
        while pending:
            each = pending.pop()
            pending += children(each)
            total += own_cpu_seconds(each)
        return total
    except (OSError, IndexError, ValueError):
        return None
