"""Finished-run counts and duration histograms per target as aggregate tables, backfilled from ``runs``;
a covering index for the run summary.

``/metrics`` used to count finished runs and bucket their durations over the whole ``runs`` table on
every scrape. From this revision the writer keeps ``agg_runs`` and ``agg_run_durations`` up to date in
its transaction (``outrider.control_plane.run_aggregates``); this migration fills them from the runs
already stored. The bucket bounds are copied here on purpose: they are the bounds the backfilled bucket
indexes refer to.

``/v1/runs/summary`` over a wide window read every run row (~1 KB each with the state JSON) to sum a few
columns: 36 ms at 10^4 runs. The (status, created_at, run_id) index gets those columns appended, so the
summary's three queries read the index alone (list_runs' paging still uses its prefix). Likewise the
``llm_calls`` time index gets target and cost appended, so the budgets' spend per target and window (read
on every scrape) comes from the index alone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import bisect
import collections

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)
TERMINAL = ("succeeded", "failed", "cancelled")
MICROS = 1_000_000


COVERED = ["status", "created_at", "run_id", "duration_seconds", "input_tokens", "output_tokens", "cost_nano_usd", "pr_count",
           "completed_at"]


def upgrade() -> None:
    op.drop_index("ix_runs_status_created_at_run_id", table_name="runs")
    op.create_index("ix_runs_status_created_at_run_id_cover", "runs", COVERED)
    op.drop_index("ix_llm_calls_time", table_name="llm_calls")
    op.create_index("ix_llm_calls_time_target_cost", "llm_calls", ["time", "target", "cost_nano_usd"])
    agg_runs = op.create_table(
        "agg_runs",
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        comment="Finished runs by target and status, kept as deltas by run_aggregates (read by /metrics).",
    )
    agg_durations = op.create_table(
        "agg_run_durations",
        sa.Column("target", sa.String(253), primary_key=True),
        sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum_micros", sa.BigInteger(), nullable=False),
        comment="Finished runs with a duration, by target and histogram bucket, kept by run_aggregates (read by /metrics).",
    )

    conn = op.get_bind()
    runs = sa.table("runs", sa.column("target"), sa.column("status"), sa.column("duration_seconds"))
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    cells: dict[tuple[str, int], list[int]] = {}
    found = conn.execute(sa.select(runs.c.target, runs.c.status, runs.c.duration_seconds).where(runs.c.status.in_(TERMINAL)))
    for target, status, duration in found:
        counts[(target or "", status)] += 1
        if duration is not None:
            cell = cells.setdefault((target or "", bisect.bisect_left(DURATION_BUCKETS, duration)), [0, 0])
            cell[0] += 1
            cell[1] += round(duration * MICROS)
    if counts:
        op.bulk_insert(agg_runs, [{"target": t, "status": s, "count": n} for (t, s), n in counts.items()])
    if cells:
        op.bulk_insert(
            agg_durations, [{"target": t, "bucket": b, "count": n, "sum_micros": total} for (t, b), (n, total) in cells.items()]
        )


def downgrade() -> None:
    op.drop_index("ix_llm_calls_time_target_cost", table_name="llm_calls")
    op.create_index("ix_llm_calls_time", "llm_calls", ["time"])
    op.drop_index("ix_runs_status_created_at_run_id_cover", table_name="runs")
    op.create_index("ix_runs_status_created_at_run_id", "runs", ["status", "created_at", "run_id"])
    op.drop_table("agg_run_durations")
    op.drop_table("agg_runs")
