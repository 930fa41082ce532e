"""The event log becomes one row per accepted request; ``events`` becomes the projector's per-event index of it.

Adds ``event_log`` (a request's new events as one JSON array, numbered ``seq``..``last_seq``), ``event_keys``
((source, id) of every logged event: the idempotency key) and ``event_log_head`` (the last seq, never reused).

Existing databases: every stored event becomes a log row of its own, with its seq, and its key; the head is the
highest seq ever given (SQLite's AUTOINCREMENT counter, else the highest stored). Rows of ``events`` that the
projector has not covered yet are deleted from it: the projector writes them again from the log, as it now writes
every new event. Its (source, event_id) constraint goes (``event_keys`` holds the keys; SQLite copies the table).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UNIQUE_KEY = "uq_events_source_event_id"


def upgrade() -> None:
    op.create_table(
        "event_log",
        sa.Column("seq", BigId, primary_key=True, autoincrement=False),
        sa.Column("last_seq", BigId, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("skip", sa.Text(), nullable=True),
    )
    op.create_table(
        "event_keys",
        sa.Column("source", sa.String(1024), primary_key=True),
        sa.Column("event_id", sa.String(256), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "event_log_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", BigId, nullable=False),
    )
    bind = op.get_bind()
    op.execute("INSERT INTO event_log (seq, last_seq, received_at, body) "
               "SELECT seq, seq, received_at, '[' || body || ']' FROM events")
    op.execute("INSERT INTO event_keys (source, event_id) SELECT source, event_id FROM events")
    head = bind.execute(sa.text("SELECT max(seq) FROM events")).scalar() or 0
    if bind.dialect.name == "sqlite":
        counter = bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'events'")).scalar()
        head = max(head, int(counter or 0))
    op.execute(sa.text("INSERT INTO event_log_head (id, seq) VALUES (1, :seq)").bindparams(seq=int(head)))
    op.execute("DELETE FROM events WHERE seq > (SELECT position FROM projector_state WHERE id = 1)")
    # (source, id) is unique in event_keys now; in the per-event index the constraint only cost the projector.
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(UNIQUE_KEY, type_="unique")


def downgrade() -> None:
    """Back to one log row per event: the events the projector has not written to ``events`` yet go there first."""
    bind = op.get_bind()
    when = sa.DateTime(timezone=True)
    events = sa.table("events", sa.column("seq", BigId), sa.column("source", sa.String()), sa.column("event_id", sa.String()),
                      sa.column("type", sa.String()), sa.column("time", when), sa.column("target", sa.String()),
                      sa.column("run_id", sa.String()), sa.column("received_at", when), sa.column("namespace", sa.String()),
                      sa.column("body", sa.Text()))
    log = sa.table("event_log", sa.column("seq", BigId), sa.column("last_seq", BigId), sa.column("received_at", when),
                   sa.column("body", sa.Text()), sa.column("skip", sa.Text()))
    position = bind.execute(sa.text("SELECT position FROM projector_state WHERE id = 1")).scalar() or 0
    sqlite = bind.dialect.name == "sqlite"

    def stored(moment: datetime) -> datetime:  # SQLite keeps the naive UTC text
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
        return moment.replace(tzinfo=None) if sqlite else moment

    rows = bind.execute(sa.select(log.c.seq, log.c.received_at, log.c.body, log.c.skip).where(log.c.seq > position)
                        .order_by(log.c.seq)).all()
    for first, received, body, skip in rows:
        items = json.loads(body)
        skipped = set(json.loads(skip)) if skip else set()
        kept = [item for index, item in enumerate(items) if index not in skipped]
        for seq, item in enumerate(kept, start=int(first)):
            if seq <= position:
                continue
            bind.execute(sa.insert(events).values(
                seq=seq, source=item["source"], event_id=item["id"], type=item["type"],
                time=stored(datetime.fromisoformat(item["time"])), target=item.get("target"), run_id=item.get("runid"),
                received_at=stored(received), namespace=item.get("namespace") or "default",
                body=json.dumps(item, separators=(",", ":"), ensure_ascii=False)))
    for table in ("event_log_head", "event_keys", "event_log"):
        op.drop_table(table)
    with op.batch_alter_table("events") as batch:
        batch.create_unique_constraint(UNIQUE_KEY, ["source", "event_id"])
