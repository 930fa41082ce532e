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


def test_sqlite_times_are_the_text_sqlalchemy_stores_for_the_same_instant() -> None:
    """The projector writes run times as text on SQLite; reads compare them with what SQLAlchemy binds, so the text
    must be SQLAlchemy's own for the same UTC instant, whatever offset the datetime carries."""
    from datetime import timedelta, timezone

    bind = sa.DateTime().dialect_impl(sa.dialects.sqlite.dialect()).bind_processor(sa.dialects.sqlite.dialect())
    assert bind is not None
    dialect = Dialect("sqlite")
    moments = [
        datetime(2026, 12, 6, 21, 49, 13, 650667, tzinfo=UTC),
        datetime(2026, 12, 6, 21, 49, 13, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 12, 6, 23, 49, 13, 650667, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 12, 7, 0, 4, 13, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    ]
    for moment in moments:
        assert dialect.time(moment) == bind(moment.astimezone(UTC).replace(tzinfo=None))
    assert dialect.time(moments[0]) == dialect.time(moments[2]) == "2026-12-06 21:49:13.650667"
    assert Dialect("postgresql").time(moments[2]) == moments[0]
