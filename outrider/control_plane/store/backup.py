"""A consistent copy of a SQLite store, the log and its projections file, taken while the control plane runs
(``outrider store backup``).

Why a command: the two files must be copied as a pair. A projections file that went further than its log is
refused at the next start (``engine.place_projections``), and a log copied while a writer commits can be torn.
SQLite's online backup copies a file from a read snapshot while writers go on (WAL); both snapshots here are taken
in one read transaction, the projections' first, so the copy's checkpoint never passes the copy's last seq.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from pathlib import Path

from outrider.control_plane.store.engine import PROJECTIONS, projections_file


@dataclasses.dataclass(frozen=True)
class Backup:
    """What :func:`backup_sqlite` wrote: the two files, the copy's last log seq and projection checkpoint (None when
    the database predates them: no projections file before migration 0012, no log head before 0011)."""

    log: Path
    projections: Path | None
    head: int | None
    position: int | None
    seconds: float


def backup_sqlite(database: Path, directory: Path) -> Backup:
    """Copy ``database`` and its projections file into ``directory`` (created if needed), under their own names.

    Never overwrites: FileExistsError when a copy is already there. Migrates nothing, so a backup taken before an
    upgrade is the database as it was. Writers are never blocked; while the copy runs, the WAL files grow instead of
    being checkpointed past its snapshot."""
    if not database.is_file():
        raise FileNotFoundError(f"no SQLite database at {database}")
    started = time.monotonic()
    projections = projections_file(database)
    directory.mkdir(parents=True, exist_ok=True)
    log_copy = directory / database.name
    projections_copy = directory / projections.name if projections.is_file() else None
    for target in (log_copy, projections_copy):
        if target is not None and (target.exists() or target.with_name(target.name + "-wal").exists()):
            raise FileExistsError(f"{target} exists: back up into an empty directory")
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)  # never writes
    try:
        if projections_copy is not None:
            source.execute(f"ATTACH DATABASE ? AS {PROJECTIONS}", (f"{projections.resolve().as_uri()}?mode=ro",))
        source.execute("BEGIN")
        position = None
        if projections_copy is not None:  # its snapshot first: the log's, taken after it, holds all it projected
            position = _number(source, f"SELECT position FROM {PROJECTIONS}.projector_state WHERE id = 1")
        head = _number(source, "SELECT seq FROM main.event_log_head WHERE id = 1")
        copies = [(PROJECTIONS, projections_copy)] if projections_copy is not None else []
        for schema, target in [*copies, ("main", log_copy)]:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # the copy is as private
            with contextlib.closing(sqlite3.connect(target)) as copy:
                source.backup(copy, name=schema)
                if schema == PROJECTIONS and position is not None:  # the running projector's lease: a restore need not wait
                    copy.execute("UPDATE projector_state SET holder = NULL, heartbeat_at = NULL WHERE id = 1")
                    copy.commit()
        source.execute("COMMIT")
    finally:
        source.close()
    return Backup(log_copy, projections_copy, head, position, time.monotonic() - started)


def _number(source: sqlite3.Connection, sql: str) -> int | None:
    """One integer the snapshot holds; None when its table does not exist (a database from before it)."""
    try:
        row = source.execute(sql).fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row is not None else None
