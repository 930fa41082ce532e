"""The initial store: events, runs, and the aggregates /metrics reads.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("type", sa.String(256), nullable=False),
        sa.Column("time", Time, nullable=False),
        sa.Column("target", sa.String(253), nullable=True),
        sa.Column("run_id", sa.String(253), nullable=True),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("body", sa.Text(), nullable=False, comment="The event as accepted, JSON."),
        sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id_seq", "events", ["run_id", "seq"])
    op.create_index("ix_events_target_seq", "events", ["target", "seq"])
    op.create_index("ix_events_type_seq", "events", ["type", "seq"])
    op.create_index("ix_events_time", "events", ["time"])

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(253), primary_key=True),
        sa.Column("target", sa.String(253), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("started_at", Time, nullable=True),
        sa.Column("completed_at", Time, nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("error_summary", sa.String(512), nullable=True),
        sa.Column("error_type", sa.String(256), nullable=True),
        sa.Column("error_stage", sa.String(128), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True, comment="Cost in 1e-9 USD; exact sums in any order."),
        sa.Column("llm_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pr_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("event_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_event_at", Time, nullable=True),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False, comment="seq of the last event folded in."),
        sa.Column("state", sa.Text(), nullable=False, comment="projection.RunState as JSON: the mergeable fold state."),
    )
    op.create_index("ix_runs_target_created_at", "runs", ["target", "created_at"])
    op.create_index("ix_runs_status_created_at", "runs", ["status", "created_at"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "agg_event_types",
        sa.Column("type", sa.String(256), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "agg_rejections",
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "agg_llm",
        sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "agg_prs",
        sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in ("agg_prs", "agg_llm", "agg_rejections", "agg_event_types", "runs", "events"):
        op.drop_table(table)
