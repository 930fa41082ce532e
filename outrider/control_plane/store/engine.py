"""The database: an engine for SQLite (WAL, a private file) or PostgreSQL (psycopg 3), and the Alembic migrations
that bring its schema to the newest revision."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import re
import secrets
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

from outrider.control_plane import tables
from outrider.control_plane.store.errors import ProjectionsMismatch

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


#: The schema name under which a SQLite database's projections file is attached (see :func:`projections_file`).
PROJECTIONS = "projections"


def _database_file(database: str | None) -> Path | None:
    """A SQLite URL's database as a file; None for in-memory or URI-named databases."""
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def sqlite_file(engine: sa.Engine) -> Path | None:
    """The file of a SQLite engine's database; None for PostgreSQL and in-memory or URI-named SQLite."""
    return _database_file(engine.url.database) if engine.dialect.name == "sqlite" else None


def projections_file(database: Path) -> Path:
    """Where a SQLite database keeps its projections: a second file beside the log's (``<database>-projections``).

    Why: SQLite has one write lock per file. With the log and the projections in one file, the appender's
    commits waited for every projector transaction (~65 ms for a batch of 5,000 events) and both cores sat
    partly idle under load (docs/performance.md). In two files the appender writes the log and the projector its
    projections at the same time. Each connection attaches the projections file as :data:`PROJECTIONS`; table
    names are unique across the two, so queries name tables unqualified and read both, as on PostgreSQL. A
    transaction that writes both files is atomic in each but not across them (SQLite's WAL mode): only a
    retention sweep does, and what a cut leaves is redone (``Store.sweep``)."""
    return database.with_name(database.name + "-projections")


def make_engine(url: str, synchronous: str = "FULL", *, cache_mb: int | None = None,
                autocheckpoint_pages: int | None = None) -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode with the chosen ``synchronous``, or PostgreSQL via psycopg 3.
    ``cache_mb`` and ``autocheckpoint_pages`` set SQLite's page cache and WAL auto-checkpoint (None: SQLite's own).
    A SQLite file has its projections file attached on every connection (:func:`projections_file`)."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = _database_file(parsed.database)
        projections = projections_file(database) if database is not None else None
        for path in (database, projections):
            if path is not None:
                _private_file(path)
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        schemas = ("main", PROJECTIONS) if projections is not None else ("main",)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if projections is not None:
                cursor.execute(f"ATTACH DATABASE ? AS {PROJECTIONS}", (str(projections),))
            for schema in schemas:
                cursor.execute(f"PRAGMA {schema}.journal_mode=WAL")  # readers never block the writer
                cursor.execute(f"PRAGMA {schema}.synchronous={synchronous}")  # FULL: a commit survives a power cut
                if cache_mb is not None:
                    cursor.execute(f"PRAGMA {schema}.cache_size={-1024 * int(cache_mb)}")  # negative: KiB
            cursor.execute("PRAGMA busy_timeout=30000")
            if autocheckpoint_pages is not None:
                cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
            cursor.close()

        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


#: What the turn file holds: the monotonic times of the appender's last commit and of the first commit of its
#: current run of commits (none more than ``WriteTurn.ACTIVE_SECONDS`` apart).
LAST_APPEND = struct.Struct("dd")


class WriteTurn:
    """Whose turn it is to write one of a SQLite database's two files (:func:`projections_file`): the log's, which
    the appender writes, or the projections', which the projector writes.

    Why: a writer that finds SQLite's write lock taken polls with growing sleeps (1, 2, 5, 10 … 100 ms, SQLite's
    busy handler), and slept past the holder's commit. An exclusive ``flock`` on a file beside the database
    queues writers of the same file in the kernel instead, which hands the turn over as soon as the holder's
    commit returns. (When the log and the projections shared one file, this queued the appender behind the
    projector.) Other writers (lease heartbeats, retention, rebuild) still go through SQLite's busy handler.
    On PostgreSQL, and for in-memory SQLite, it does nothing.

    The log's turn file also carries, mapped into both processes, when the appender last committed: the
    projector defers to a burst by it (``Projector._deferring``).
    """

    #: An append older than this says the appender has been idle since (seconds).
    ACTIVE_SECONDS = 0.1

    def __init__(self, engine: sa.Engine, *, projections: bool = False) -> None:
        database = sqlite_file(engine)
        #: The file whose ``flock`` is the turn, and the file that carries the appender's last commit.
        self._path = (Path(str(projections_file(database) if projections else database) + "-writeturn")
                      if database is not None else None)
        self._clock_path = Path(str(database) + "-writeturn") if database is not None else None
        self._fd: int | None = None
        self._clock_fd: int | None = None
        self._guard = threading.Lock()  # opening, mapping and closing the files (held briefly)
        #: One holder per instance, even when threads share it. Not ``_guard``: a thread asking whether the appender
        #: is active must not wait out another thread's whole transaction (the projector's fold beside its write).
        self._hold = threading.Lock()
        #: The log's turn file mapped: when the appender last committed (:meth:`note_append`).
        self._shared: mmap.mmap | None = None

    def _open(self) -> bool:
        """Open the turn file (and map the log's) once; False when there is none (not a SQLite file) or it cannot be."""
        if self._fd is not None:
            return True
        if self._path is None or self._clock_path is None:
            return False
        try:
            self._clock_fd = os.open(self._clock_path, os.O_CREAT | os.O_RDWR, 0o600)
            if os.fstat(self._clock_fd).st_size < LAST_APPEND.size:
                os.ftruncate(self._clock_fd, LAST_APPEND.size)
            self._shared = mmap.mmap(self._clock_fd, LAST_APPEND.size)
            self._fd = (self._clock_fd if self._path == self._clock_path
                        else os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError:  # a turn is for speed only: SQLite's own lock still keeps writes apart
            log.warning("cannot open %s; writers wait in SQLite's busy handler instead", self._path, exc_info=True)
            self._path = None
            return False
        return True

    def note_append(self) -> None:
        """The appender has just committed: say so in the turn file (read by :meth:`appender_busy_for`)."""
        with self._guard:
            if self._open() and self._shared is not None:
                now = time.monotonic()
                last, since = LAST_APPEND.unpack(self._shared[:])
                self._shared[:] = LAST_APPEND.pack(now, since if 0 < now - last < self.ACTIVE_SECONDS else now)

    def appender_busy_for(self) -> float | None:
        """For how long (seconds) the appender has been committing without a pause of :data:`ACTIVE_SECONDS`; None
        when it has not committed within that (the monotonic clock is one for all processes), and on PostgreSQL and
        in-memory SQLite, where appends and projection share no turn."""
        with self._guard:
            if not self._open() or self._shared is None:
                return None
            last, since = LAST_APPEND.unpack(self._shared[:])
        now = time.monotonic()
        return now - since if now - last < self.ACTIVE_SECONDS else None

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
            for fd in {self._fd, self._clock_fd} - {None}:
                os.close(fd)  # type: ignore[arg-type]
            self._fd = self._clock_fd = None


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (``alembic upgrade head``), inside one transaction; then,
    on a SQLite file, move the tables the projector writes into the projections file (:func:`place_projections`)."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    place_projections(engine)


def place_projections(engine: sa.Engine) -> None:
    """Move every table the projector writes (``tables.PROJECTOR_TABLES``) that is in a SQLite database's main
    file into its projections file (:func:`projections_file`), rows and indexes; nothing elsewhere.

    Migrations create tables in the main file, so this runs after every upgrade: on a new database it moves
    empty tables; on one from before the projections file it moves the projections once (``VACUUM`` gives the
    main file's space back). Each table is copied, then dropped from the main file in a second transaction; the
    main file's table stays the one that counts until it is dropped, so a move cut short is redone from it.
    Migration 0012's downgrade moves them back (:func:`gather_projections`).

    It also checks that the two files belong together: a projections file of another database, or one that went
    further than its log, stops the start (:func:`_refuse_foreign_projections`); one that is missing or lacks a
    table is created empty and the log replayed into it (:func:`_recreate_lost_projections`)."""
    database = sqlite_file(engine)
    if database is None:
        return
    with engine.connect() as conn:
        with conn.begin():
            _refuse_foreign_projections(conn, database)
        for table in tables.PROJECTOR_TABLES:
            with conn.begin():
                if not _has_table(conn, "main", table.name):
                    continue
                _copy_table(conn, table.name, "main", PROJECTIONS)
            with conn.begin():
                conn.exec_driver_sql(f'DROP TABLE main."{table.name}"')
            log.info("moved table %s into the projections file", table.name)
        with conn.begin():
            _recreate_lost_projections(conn, database)
            _pair(conn)


def _log_head(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT seq FROM main.event_log_head WHERE id = 1").scalar() or 0)


def _pair_id(conn: sa.Connection, schema: str) -> int:
    """The number that marks a SQLite file as one database's log or projections (its header's ``user_version``;
    0: not marked yet)."""
    return int(conn.exec_driver_sql(f"PRAGMA {schema}.user_version").scalar() or 0)


def _pair(conn: sa.Connection) -> None:
    """Mark the log file and its projections file with the same random number (kept in both files' headers, so a
    copy keeps it), for :func:`_refuse_foreign_projections` to tell another database's projections file."""
    pair = _pair_id(conn, "main") or _pair_id(conn, PROJECTIONS) or secrets.randbelow(2**31 - 1) + 1
    for schema in ("main", PROJECTIONS):
        if _pair_id(conn, schema) != pair:
            conn.exec_driver_sql(f"PRAGMA {schema}.user_version = {pair}")


def _refuse_foreign_projections(conn: sa.Connection, database: Path) -> None:
    """:class:`ProjectionsMismatch` when the projections file is another database's, or its checkpoint is past the
    log's last seq.

    The checkpoint never passes the log's head, so the two files then come from different moments (restored from
    different backups, or the log file lost and started again). Projecting would pass over every event the log
    numbers up to that checkpoint, or fold this log onto another's records, silently; the operator decides which
    file is right."""
    if not _has_table(conn, PROJECTIONS, tables.projector_state.name):
        return
    log_pair, projections_pair = _pair_id(conn, "main"), _pair_id(conn, PROJECTIONS)
    if log_pair and projections_pair and log_pair != projections_pair:
        raise ProjectionsMismatch(
            f"the projections file {projections_file(database)} belongs to another database than the log {database} "
            f"(marked {projections_pair}, the log {log_pair}). Put this log's own projections file back, or move this "
            f"one aside to rebuild the projections from this log (started with the log, the control plane replays it)")
    position = int(conn.exec_driver_sql(f"SELECT position FROM {PROJECTIONS}.projector_state WHERE id = 1").scalar() or 0)
    head = _log_head(conn)
    if position > head:
        raise ProjectionsMismatch(
            f"the projections file {projections_file(database)} has projected the event log up to seq {position}, but "
            f"the log {database} ends at seq {head}: the two files come from different moments. Restore both from the "
            f"same backup, or move the projections file aside to rebuild it from this log (started with the log, "
            f"the control plane replays it)")


def _recreate_lost_projections(conn: sa.Connection, database: Path) -> None:
    """Empty projections, with their checkpoint at the log's start, when the projections file lacks any of its
    tables (deleted, lost, or not restored with the log): the projector then replays the log into them, as
    ``outrider store rebuild`` does. ``swept_through`` says where the log starts, so what retention deleted is
    known to be missing from the rebuilt totals (and a later ``rebuild`` asks for ``--force``)."""
    missing = [table.name for table in tables.PROJECTOR_TABLES if not _has_table(conn, PROJECTIONS, table.name)]
    if not missing:
        return
    for table in tables.PROJECTOR_TABLES:
        if _has_table(conn, PROJECTIONS, table.name):
            conn.exec_driver_sql(f'DROP TABLE {PROJECTIONS}."{table.name}"')
    projected = conn.execution_options(schema_translate_map={None: PROJECTIONS})
    for table in tables.PROJECTOR_TABLES:
        table.create(projected)
    first = conn.exec_driver_sql("SELECT min(seq) FROM main.event_log").scalar()
    swept_through = int(first) - 1 if first is not None else _log_head(conn)
    conn.exec_driver_sql(f"INSERT INTO {PROJECTIONS}.projector_state (id, position, version, swept_through) "
                         "VALUES (1, 0, 0, ?)", (swept_through,))
    lacked = "was missing" if len(missing) == len(tables.PROJECTOR_TABLES) else f"lacked {', '.join(missing)}"
    log.warning("the projections file %s %s: its projections start empty and the projector replays the event log %s "
                "into them (runs and analytics lag until it has caught up; GET /v1/projection)%s",
                projections_file(database), lacked, database,
                f"; events up to seq {swept_through} were deleted by retention and are not in the rebuilt totals"
                if swept_through else "")


def gather_projections(conn: sa.Connection) -> None:
    """The reverse of :func:`place_projections`, in the caller's transaction: every table of the projections file
    back into the main file (for migrations that predate it)."""
    if conn.dialect.name != "sqlite" or not _has_schema(conn, PROJECTIONS):
        return
    for table in tables.PROJECTOR_TABLES:
        if _has_table(conn, PROJECTIONS, table.name):
            _copy_table(conn, table.name, PROJECTIONS, "main")
            conn.exec_driver_sql(f'DROP TABLE {PROJECTIONS}."{table.name}"')


#: The start of a table's or an index's ``CREATE`` statement, before its name (as SQLite keeps it).
_CREATE = re.compile(r"^\s*(CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?)", re.IGNORECASE)


def _copy_table(conn: sa.Connection, name: str, source: str, destination: str) -> None:
    """Table ``name`` of schema ``source`` created again (with its indexes) and filled in ``destination``, replacing
    any copy there."""
    if _has_table(conn, destination, name):  # a copy from a move cut short
        conn.exec_driver_sql(f'DROP TABLE {destination}."{name}"')
    ddl = conn.exec_driver_sql(f"SELECT sql FROM {source}.sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                               "ORDER BY type = 'index', name", (name,)).scalars().all()
    for statement in ddl:
        conn.exec_driver_sql(_CREATE.sub(lambda m: f"{m.group(1)}{destination}.", statement, count=1))
    conn.exec_driver_sql(f'INSERT INTO {destination}."{name}" SELECT * FROM {source}."{name}"')


def _has_table(conn: sa.Connection, schema: str, name: str) -> bool:
    return conn.exec_driver_sql(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).first() is not None


def _has_schema(conn: sa.Connection, schema: str) -> bool:
    return any(row[1] == schema for row in conn.exec_driver_sql("PRAGMA database_list"))
