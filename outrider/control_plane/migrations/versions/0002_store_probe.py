"""A one-row table readiness writes to after a failed commit, to learn whether commits work again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_probe",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        comment="One row rewritten by readiness probes after a failed commit: proves commits work again.",
    )


def downgrade() -> None:
    op.drop_table("store_probe")
