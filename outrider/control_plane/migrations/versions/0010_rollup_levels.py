"""Rollup levels whose size does not grow with the runs: 30-day analytics at 10^7 events.

Adds ``rollup_runs_all`` (``rollup_runs`` summed over targets), ``rollup_runs_day`` (the same per day),
``rollup_model_runs`` (``run_models`` counted per first hour and the run's status) and its sum over targets
``rollup_model_runs_all``, and indexes the hour-keyed rollups on (target, hour) for reads narrowed to a target.

Existing databases: the new tables are filled from ``rollup_runs`` and from ``run_models`` joined to the runs,
in the same transaction; ``outrider store rebuild`` gives the same rows from the log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RUN_NUMBERS = ("count", "tokens", "cost_nano_usd", "priced", "prs")
RUN_KINDS = ("status", "error_type", "error_stage")
TARGET_INDEXES = (("ix_rollup_llm_target_hour", "rollup_llm"), ("ix_rollup_llm_latency_target_hour", "rollup_llm_latency"),
                  ("ix_rollup_runs_target_hour", "rollup_runs"))


def _key(*columns: tuple[str, int | None]) -> list[sa.Column[Any]]:
    """Primary-key columns: integers where no length is given, strings of that length otherwise."""
    return [sa.Column(name, sa.String(length) if length else sa.Integer(), primary_key=True, autoincrement=False)
            for name, length in columns]


def _numbers(*names: str) -> list[sa.Column[Any]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def upgrade() -> None:
    kinds = (("status", 16), ("error_type", 256), ("error_stage", 128))
    op.create_table("rollup_runs_all", *_key(("hour", None), ("axis", 16), ("namespace", 63), *kinds), *_numbers(*RUN_NUMBERS))
    op.create_table("rollup_runs_day", *_key(("day", None), ("axis", 16), ("namespace", 63), ("target", 253), *kinds),
                    *_numbers(*RUN_NUMBERS))
    model = (("provider", 128), ("model", 256), ("status", 16))
    op.create_table("rollup_model_runs", *_key(("hour", None), ("namespace", 63), ("target", 253), *model), *_numbers("count"))
    op.create_table("rollup_model_runs_all", *_key(("hour", None), ("namespace", 63), *model), *_numbers("count"))
    op.create_index("ix_rollup_model_runs_target_hour", "rollup_model_runs", ["target", "hour"])
    for name, table in TARGET_INDEXES:
        op.create_index(name, table, ["target", "hour"])

    sums = ", ".join(f"sum({n})" for n in RUN_NUMBERS)
    numbers = ", ".join(RUN_NUMBERS)
    kept = ", ".join(("axis", "namespace", *RUN_KINDS))
    op.execute(f"INSERT INTO rollup_runs_all (hour, {kept}, {numbers}) SELECT hour, {kept}, {sums} FROM rollup_runs "
               f"GROUP BY hour, {kept} HAVING sum(count) <> 0")
    op.execute(f"INSERT INTO rollup_runs_day (day, target, {kept}, {numbers}) SELECT hour / 24, target, {kept}, {sums} "
               f"FROM rollup_runs GROUP BY hour / 24, target, {kept} HAVING sum(count) <> 0")
    op.execute("INSERT INTO rollup_model_runs (hour, namespace, target, provider, model, status, count) "
               "SELECT m.first_hour, m.namespace, coalesce(m.target, ''), m.provider, m.model, coalesce(r.status, ''), count(*) "
               "FROM run_models m LEFT JOIN runs r ON r.namespace = m.namespace AND r.run_id = m.run_id "
               "GROUP BY m.first_hour, m.namespace, coalesce(m.target, ''), m.provider, m.model, coalesce(r.status, '')")
    op.execute("INSERT INTO rollup_model_runs_all (hour, namespace, provider, model, status, count) "
               "SELECT hour, namespace, provider, model, status, sum(count) FROM rollup_model_runs "
               "GROUP BY hour, namespace, provider, model, status")


def downgrade() -> None:
    for name, table in TARGET_INDEXES:
        op.drop_index(name, table_name=table)
    for table in ("rollup_model_runs_all", "rollup_model_runs", "rollup_runs_day", "rollup_runs_all"):
        op.drop_table(table)
