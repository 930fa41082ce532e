"""Insights: per-call LLM rows for /v1/analytics/models, and indexes for trends and retention.

``llm_calls`` holds one row per ``run.llm_usage`` event (filled from the existing events here, then by
the writer in the same transaction as the event), so model analytics read a narrow indexed table instead
of parsing event bodies. Trends count runs by ``started_at`` / ``completed_at`` and breaker trips by
(type, time); the retention sweep deletes events by ``time`` (already indexed).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NANO = 1_000_000_000


def upgrade() -> None:
    calls = op.create_table(
        "llm_calls",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target", sa.String(253), nullable=True),
        sa.Column("run_id", sa.String(253), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_llm_calls_time", "llm_calls", ["time"])
    op.create_index("ix_llm_calls_target_time", "llm_calls", ["target", "time"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_runs_completed_at", "runs", ["completed_at"])
    op.create_index("ix_events_type_time", "events", ["type", "time"])

    conn = op.get_bind()
    found = conn.execute(
        sa.text("SELECT seq, time, target, run_id, body FROM events WHERE type = 'run.llm_usage' AND run_id IS NOT NULL")
    )
    rows = []
    for seq, time, target, run_id, body in found:
        data = json.loads(body).get("data") or {}
        cost = data.get("cost_usd")
        if isinstance(time, str):
            time = datetime.fromisoformat(time)
        if time.tzinfo is None:
            time = time.replace(tzinfo=UTC)
        rows.append({
            "seq": seq, "time": time, "target": target, "run_id": run_id,
            "provider": str(data.get("provider")), "model": str(data.get("model")),
            "input_tokens": int(data.get("input_tokens") or 0), "output_tokens": int(data.get("output_tokens") or 0),
            "cost_nano_usd": round(float(cost) * NANO) if cost is not None else None,
            "latency_s": data.get("latency_s"), "error": bool(data.get("error")),
        })
        if len(rows) >= 1000:
            op.bulk_insert(calls, rows)
            rows = []
    if rows:
        op.bulk_insert(calls, rows)


def downgrade() -> None:
    op.drop_index("ix_events_type_time", table_name="events")
    op.drop_index("ix_runs_completed_at", table_name="runs")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_table("llm_calls")
