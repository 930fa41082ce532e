"""Run indexes that end with run_id, so cursor pages of GET /v1/runs are pure index range scans.

GET /v1/runs orders by (created_at, run_id) descending and pages with a row-value comparison on the
same pair; with run_id in the index the database neither sorts nor rescans earlier pages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_runs_target_created_at": ["target", "created_at"],
    "ix_runs_status_created_at": ["status", "created_at"],
    "ix_runs_created_at": ["created_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="runs")
        op.create_index(name.replace("created_at", "created_at_run_id"), "runs", [*columns, "run_id"])


def downgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name.replace("created_at", "created_at_run_id"), table_name="runs")
        op.create_index(name, "runs", columns)
