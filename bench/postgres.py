"""A throw-away PostgreSQL server for the benchmarks, from Debian's postgresql package.

PostgreSQL refuses to run as root, so when we are root the cluster is created and run as the
``postgres`` user (``runuser``). The data directory is a fresh temporary folder; fsync stays on (the
default), so the comparison with SQLite's synchronous=FULL is fair. ``start()`` returns None with a reason
when no server can be started here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import servers


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """A new empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.datadir, ignore_errors=True)


def start() -> tuple[PostgresServer | None, str | None]:
    """A running server, or (None, why not)."""
    bindir = _bindir()
    if bindir is None:
        return None, "pg_ctl not found (Debian package postgresql)"
    as_user: list[str] = []
    datadir = Path(tempfile.mkdtemp(prefix="outrider-bench-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return None, "running as root and runuser is missing"
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(datadir, "postgres", "postgres")
    port = servers.free_port()
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(datadir),
                "-o",
                options,
                "-l",
                str(datadir / "server.log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(datadir, ignore_errors=True)
        return None, f"PostgreSQL did not start: {exc} {detail.decode(errors='replace')[-500:]}"
    return PostgresServer(datadir=datadir, port=port, bindir=bindir, as_user=as_user), None
