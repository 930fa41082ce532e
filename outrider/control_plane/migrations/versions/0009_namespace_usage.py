"""Storage per namespace: ``namespace_usage`` (events and bytes each namespace keeps in the log).

The projector adds what it covers, the retention sweep subtracts what it deletes; the quota (``quota.py``)
reads it. Existing databases: filled from the events the projector has covered, in the same transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_usage",
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("events", sa.BigInteger(), nullable=False, comment="Events of the namespace in the log."),
        sa.Column("bytes", sa.BigInteger(), nullable=False, comment="Their stored size (the events' JSON, in bytes)."),
        comment=(
            "What each namespace keeps in the log, for its storage quota: added by the projector as it covers "
            "events, subtracted by the retention sweep as it deletes them."
        ),
    )
    size = "length(CAST(body AS BLOB))" if op.get_bind().dialect.name == "sqlite" else "octet_length(body)"
    op.execute(
        "INSERT INTO namespace_usage (namespace, events, bytes) "
        f"SELECT namespace, count(*), coalesce(sum({size}), 0) FROM events "
        "WHERE seq <= (SELECT position FROM projector_state WHERE id = 1) GROUP BY namespace"
    )


def downgrade() -> None:
    op.drop_table("namespace_usage")
