"""Statements on a raw DBAPI cursor, written once for SQLite and PostgreSQL.

Why raw cursors: appending to the log and projecting it are the store's hot paths, and SQLAlchemy's per-row
parameter processing cost more than the statements themselves. Everything else uses SQLAlchemy Core.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import chain
from typing import Any

#: Rows per multi-row statement: far below either database's parameter limit for our widest tables (SQLite's is
#: 32,766 since 3.32).
CHUNK = 500


class Dialect:
    """The few ways SQLite and PostgreSQL differ on the hot paths: placeholders, timestamps, multi-row writes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sqlite = name == "sqlite"
        self.mark = "?" if self.sqlite else "%s"
        #: SQL for an event's stored size in bytes (SQLite's length() of text counts characters).
        self.body_bytes = "length(CAST(body AS BLOB))" if self.sqlite else "octet_length(body)"
        self._statements: dict[str, str] = {}

    def time(self, moment: datetime) -> Any:
        """A timestamp as the driver takes it: SQLite gets SQLAlchemy's own text format (UTC), PostgreSQL the datetime."""
        if self.sqlite:
            if moment.tzinfo is UTC:  # the fold's times (parsed from "…+00:00"): drop the offset from the text
                return moment.isoformat(sep=" ", timespec="microseconds")[:26]
            return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment.astimezone(UTC)

    def write_rows(self, cursor: Any, head: str, width: int, rows: list[tuple[Any, ...]], tail: str = "") -> None:
        """Run ``{head} VALUES (…), … {tail}`` for ``rows``, in chunks of :data:`CHUNK` rows, on both databases.
        Why not ``executemany``: SQLite's releases the interpreter lock around every row, so with the projector's
        fold running in another thread each row waited for the lock (a convoy); one statement per chunk waits once.
        psycopg's costs a statement per row. Rows must not repeat a conflict key: one statement may not update a
        row twice (PostgreSQL refuses it)."""
        if not rows:
            return
        raw = self.raw_cursor(cursor)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            raw.execute(self.values(head, tail, width, len(chunk)), list(chain.from_iterable(chunk)))  # flat, in C

    def values(self, head: str, tail: str, width: int, count: int) -> str:
        """``{head} VALUES (…), … {tail}`` for ``count`` rows, with the placeholders :meth:`raw_cursor` takes (``?``
        on SQLite, PostgreSQL's own ``$n``); kept for full chunks only (one per statement), so the cache stays a few
        hundred KiB."""
        key = f"{head}\0{tail}\0{width}"
        if count == CHUNK and key in self._statements:
            return self._statements[key]
        if self.sqlite:
            rows = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * count)
        else:
            rows = ", ".join("(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")" for row in range(count))
        sql = f"{head} VALUES {rows} {tail}"
        if count == CHUNK:
            self._statements[key] = sql
        return sql

    def raw_cursor(self, cursor: Any) -> Any:
        """The cursor for :meth:`values` statements: on SQLite ``cursor`` itself; on PostgreSQL a cursor on its
        connection (same transaction) that sends ``$n`` placeholders as they are. Why: psycopg's usual cursor
        rewrites ``%s`` by a regular expression on every call, uncached for statements over 4 KiB; for the
        projector's multi-row upserts that was a quarter of its time (docs/performance.md)."""
        if self.sqlite:
            return cursor
        import psycopg  # here: only PostgreSQL stores need it (the ``postgres`` extra)

        return psycopg.RawCursor(cursor.connection)

    def insert_rows(self, cursor: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (no conflict handling): SQLite with :meth:`write_rows`, PostgreSQL with ``COPY``, which took
        the projector's per-event index from ~10,000 to ~22,000 events a second against multi-row VALUES (psycopg
        spent ~65 µs of Python per event composing and adapting those statements; docs/performance.md)."""
        if not rows:
            return
        if self.sqlite:
            self.write_rows(cursor, f"INSERT INTO {table} ({', '.join(columns)})", len(columns), rows)
            return
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def bump(self, cursor: Any, table: str, keys: tuple[str, ...], numbers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Add each row's numbers (the row is keys then numbers) to the row with the same keys (insert it when new)."""
        if not rows:
            return
        names = keys + numbers
        self.write_rows(
            cursor, f"INSERT INTO {table} ({', '.join(names)})", len(names), rows,
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in numbers),
        )
