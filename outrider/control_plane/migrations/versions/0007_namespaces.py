"""Namespaces are tenants: a run is (namespace, run_id), a target (namespace, target).

Adds ``namespace`` to ``events`` and ``llm_calls``, makes it part of the key of ``runs`` and of the per-target
aggregates (``agg_llm``, ``agg_prs``, ``agg_runs``, ``agg_run_durations``). Everything stored before this
revision belongs to the namespace ``default`` (documented in docs/api.md): until now events named no namespace.

PostgreSQL changes the tables in place; SQLite cannot change a primary key, so it rebuilds those tables
(new table, copy, drop, rename, indexes again) inside the migration's transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)
DEFAULT = "default"

#: Tables whose key gains the namespace: (name, key columns after namespace, other columns).
RUNS_INDEXES = {
    "ix_runs_target_created_at_run_id": ["target", "created_at", "run_id"],
    "ix_runs_status_created_at_run_id_cover": ["status", "created_at", "run_id", "duration_seconds", "input_tokens",
                                               "output_tokens", "cost_nano_usd", "pr_count", "completed_at"],
    "ix_runs_created_at_run_id": ["created_at", "run_id"],
    "ix_runs_started_at": ["started_at"],
    "ix_runs_completed_at": ["completed_at"],
}


def _runs_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("namespace", sa.String(63), primary_key=True),
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
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True),
        sa.Column("llm_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pr_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("event_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_event_at", Time, nullable=True),
        sa.Column("updated_seq", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
    ]


AGGREGATES: dict[str, tuple[list[str], Callable[[], list[sa.Column[Any]]]]] = {
    "agg_llm": (["target", "model"], lambda: [
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
    ]),
    "agg_prs": (["target"], lambda: [
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
    ]),
    "agg_runs": (["target", "status"], lambda: [
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    ]),
    "agg_run_durations": (["target", "bucket"], lambda: [
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum_micros", sa.BigInteger(), nullable=False),
    ]),
}


def _rebuild(name: str, columns: list[sa.Column[Any]], indexes: dict[str, list[str]]) -> None:
    """SQLite: the table again with ``columns`` (namespace first), rows copied under 'default'."""
    for index in indexes:
        op.drop_index(index, table_name=name)
    op.rename_table(name, f"{name}_before_0007")
    op.create_table(name, *columns)
    names = [column.name for column in columns if column.name != "namespace"]
    listed = ", ".join(names)
    op.execute(f"INSERT INTO {name} (namespace, {listed}) SELECT '{DEFAULT}', {listed} FROM {name}_before_0007")
    op.drop_table(f"{name}_before_0007")
    for index, on in indexes.items():
        op.create_index(index, name, on)


def upgrade() -> None:
    op.add_column("events", sa.Column("namespace", sa.String(63), nullable=False, server_default=DEFAULT))
    op.add_column("llm_calls", sa.Column("namespace", sa.String(63), nullable=False, server_default=DEFAULT))
    if op.get_bind().dialect.name == "postgresql":
        for name, keys in {"runs": ["run_id"], **{table: key for table, (key, _) in AGGREGATES.items()}}.items():
            op.add_column(name, sa.Column("namespace", sa.String(63), nullable=False, server_default=DEFAULT))
            op.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_pkey")
            op.create_primary_key(f"{name}_pkey", name, ["namespace", *keys])
        return
    _rebuild("runs", _runs_columns(), RUNS_INDEXES)
    for name, (_, columns) in AGGREGATES.items():
        _rebuild(name, columns(), {})


def _strip(name: str, columns: list[sa.Column[Any]], indexes: dict[str, list[str]]) -> None:
    """SQLite: the table again without its namespace (fails, and rolls back, if two namespaces share a key)."""
    for index in indexes:
        op.drop_index(index, table_name=name)
    op.rename_table(name, f"{name}_after_0007")
    kept = [column for column in columns if column.name != "namespace"]
    op.create_table(name, *kept)
    listed = ", ".join(column.name for column in kept)
    op.execute(f"INSERT INTO {name} ({listed}) SELECT {listed} FROM {name}_after_0007")
    op.drop_table(f"{name}_after_0007")
    for index, on in indexes.items():
        op.create_index(index, name, on)


def downgrade() -> None:
    """Back to one namespace. Refused (the transaction rolls back) when two namespaces hold the same run name or
    the same target's aggregates: they cannot be merged back without losing one."""
    if op.get_bind().dialect.name == "postgresql":
        for name, keys in {"runs": ["run_id"], **{table: key for table, (key, _) in AGGREGATES.items()}}.items():
            op.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_pkey")
            op.drop_column(name, "namespace")
            op.create_primary_key(f"{name}_pkey", name, keys)
    else:
        _strip("runs", _runs_columns(), RUNS_INDEXES)
        for name, (_, columns) in AGGREGATES.items():
            _strip(name, columns(), {})
    op.drop_column("llm_calls", "namespace")
    op.drop_column("events", "namespace")
