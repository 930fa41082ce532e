"""``store.sql.Dialect``: the hot-path statements write every row, on SQLite and PostgreSQL alike, past the size of
one PostgreSQL chunk (multi-row VALUES with ``$n`` placeholders, and ``COPY`` for plain inserts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from outrider.control_plane import store as store_module
from outrider.control_plane import tables
from outrider.control_plane.store.projector import EVENT_COLUMNS
from outrider.control_plane.store.sql import CHUNK, Dialect

ROWS = 2 * CHUNK + 201  # two full chunks and a partial one


def test_upserts_and_inserts_write_every_row_across_chunks(make_settings: Any) -> None:
    the_store = store_module.Store(make_settings())
    store_module.migrate(the_store.engine)
    dialect = Dialect(the_store.engine.dialect.name)
    counts = [(f"type-{index}", index) for index in range(ROWS)]
    when = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
    indexed = [(index + 1, "/src", f"id-{index}", "run.log", dialect.time(when), "org/t", f"run-{index % 7}",
                dialect.time(when), "default", f'{{"id":"id-{index}","note":"tab\\there, \\\\ and \\"quotes\\""}}')
               for index in range(ROWS)]
    try:
        for _ in range(2):  # the second time every key exists: ON CONFLICT adds
            with the_store.engine.begin() as conn:
                dialect.bump(conn.connection.cursor(), "agg_event_types", ("type",), ("count",), counts)
        with the_store.engine.begin() as conn:
            dialect.insert_rows(conn.connection.cursor(), "events", EVENT_COLUMNS, indexed)
        with the_store.engine.connect() as conn:
            stored = dict(conn.execute(sa.select(tables.agg_event_types.c.type, tables.agg_event_types.c.count)).all())
            events = conn.execute(sa.select(tables.events.c.seq, tables.events.c.body, tables.events.c.time)
                                  .order_by(tables.events.c.seq)).all()
        assert stored == {name: 2 * count for name, count in counts}
        assert [row.seq for row in events] == list(range(1, ROWS + 1))
        assert [row.body for row in events] == [row[-1] for row in indexed]  # text with tabs, backslashes, quotes intact
        assert all((row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)) == when for row in events)
    finally:
        the_store.engine.dispose()
