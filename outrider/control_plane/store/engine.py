"""The database: an engine for SQLite (WAL, a private file) or PostgreSQL (psycopg 3), and the Alembic migrations
that bring its schema to the newest revision."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (SQLite hands back naive UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), and tighten an existing one and its WAL/SHM:
    they hold every log line and traceback agents sent. SQLite creates the WAL and SHM files with the mode of
    the database file, so a 0600 database keeps them 0600 too."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def make_engine(url: str, synchronous: str = "FULL") -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode with the chosen ``synchronous``, or PostgreSQL via psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _private_file(Path(parsed.database))
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, one fsync per commit
            cursor.execute(f"PRAGMA synchronous={synchronous}")  # FULL: a commit survives a power cut
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (``alembic upgrade head``), inside one transaction."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
