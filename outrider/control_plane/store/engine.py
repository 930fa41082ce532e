"""The database: an engine for SQLite (WAL, a private file) or PostgreSQL (psycopg 3), and the Alembic migrations
that bring its schema to the newest revision."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

log = logging.getLogger(__name__)


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


#: SQLite page cache (MiB) of the connections that append to the log and write the projections. Their inserts
#: land in the log's seven B-trees and the rollups' keys; with SQLite's default 2 MiB most of those pages were
#: read back from the OS on every group (measured: +7 % sustained ingestion at 32 MiB). Reads keep the default.
WRITER_CACHE_MB = 32
#: WAL pages after which the appender and the projector checkpoint (SQLite's default is 1,000, 4 MiB). A
#: checkpoint runs inside the commit that crosses the mark, holding up the other writer; at 4 MiB that was
#: several times a second under load (measured: ~7 % of sustained ingestion). At 64 MiB it is every ~2 s at full
#: load, and the WAL file stays under ~64 MiB plus one group. (Checkpointing from a thread beside the appender
#: instead was measured and lost: docs/performance.md.)
WRITER_AUTOCHECKPOINT_PAGES = 16_000


def make_engine(url: str, synchronous: str = "FULL", *, cache_mb: int | None = None,
                autocheckpoint_pages: int | None = None) -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode with the chosen ``synchronous``, or PostgreSQL via psycopg 3.
    ``cache_mb`` and ``autocheckpoint_pages`` set SQLite's page cache and WAL auto-checkpoint (None: SQLite's own)."""
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
            if cache_mb is not None:
                cursor.execute(f"PRAGMA cache_size={-1024 * int(cache_mb)}")  # negative: KiB
            if autocheckpoint_pages is not None:
                cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
            cursor.close()

        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


#: What the turn file holds: the monotonic time of the appender's last commit.
LAST_APPEND = struct.Struct("d")


class WriteTurn:
    """Whose turn it is to write a SQLite database, between the appender and the projector (each holds one).

    Why: SQLite has one write lock, and a writer that finds it taken polls with growing sleeps (1, 2, 5, 10 …
    100 ms, SQLite's busy handler), so under load the appender and the projector each slept past the other's
    commit and the lock sat idle between them (measured: the projector spent a fifth of its time there). An
    exclusive ``flock`` on a file beside the database queues them in the kernel instead, which hands the turn
    over as soon as the holder's commit returns. Other writers (lease heartbeats, retention, rebuild) still go
    through SQLite's busy handler. On PostgreSQL, and for in-memory SQLite, it does nothing.

    The file also carries, mapped into both processes, when the appender last committed: the projector defers to
    a burst by it (``Projector._deferring``).
    """

    #: An append older than this says the appender has been idle since (seconds).
    ACTIVE_SECONDS = 0.1

    def __init__(self, engine: sa.Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = (Path(database).with_name(Path(database).name + "-writeturn")
                      if database and database != ":memory:" and not database.startswith("file:") else None)
        self._fd: int | None = None
        self._guard = threading.Lock()  # opening, mapping and closing the file (held briefly)
        #: One holder per instance, even when threads share it. Not ``_guard``: a thread asking whether the appender
        #: is active must not wait out another thread's whole transaction (the projector's fold beside its write).
        self._hold = threading.Lock()
        #: The turn file mapped: when the appender last committed (:meth:`note_append`).
        self._shared: mmap.mmap | None = None

    def _open(self) -> bool:
        """Open (and map) the turn file once; False when there is none (not a SQLite file) or it cannot be."""
        if self._fd is not None:
            return True
        if self._path is None:
            return False
        try:
            self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
            if os.fstat(self._fd).st_size < LAST_APPEND.size:
                os.ftruncate(self._fd, LAST_APPEND.size)
            self._shared = mmap.mmap(self._fd, LAST_APPEND.size)
        except OSError:  # a turn is for speed only: SQLite's own lock still keeps writes apart
            log.warning("cannot open %s; writers wait in SQLite's busy handler instead", self._path, exc_info=True)
            self._path = None
            return False
        return True

    def note_append(self) -> None:
        """The appender has just committed: say so in the turn file (read by :meth:`appender_active`)."""
        with self._guard:
            if self._open() and self._shared is not None:
                self._shared[:] = LAST_APPEND.pack(time.monotonic())

    def appender_active(self) -> bool:
        """Whether the appender committed within :data:`ACTIVE_SECONDS` (the monotonic clock is one for all
        processes); False on PostgreSQL and in-memory SQLite, where appends and projection share no turn."""
        with self._guard:
            if not self._open() or self._shared is None:
                return False
            written = float(LAST_APPEND.unpack(self._shared[:])[0])
        return time.monotonic() - written < self.ACTIVE_SECONDS

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._hold:
            with self._guard:
                fd = self._fd if self._open() else None
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._guard:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (``alembic upgrade head``), inside one transaction."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
