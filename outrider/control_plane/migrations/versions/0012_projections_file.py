"""SQLite keeps the tables the projector writes in a second file (``<database>-projections``).

Why: SQLite has one write lock per file, and the appender's commits waited for every projector transaction
(``store.engine.projections_file``). Every connection attaches that file as schema ``projections``; table names
are unique across the two files, so queries name tables unqualified.

Upgrade: nothing here. ``store.migrate`` moves the tables after every upgrade (``store.engine.place_projections``),
each in transactions of its own so that a move cut short is redone, which a migration's one transaction cannot
give across two files. On a database migrated by ``alembic`` alone they stay in the main file, which works too
(one write lock). A later migration that creates an index on one of them names the schema it is in.

Downgrade: the tables move back into the main file (``store.engine.gather_projections``), for the migrations before
this one. Nothing on PostgreSQL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from outrider.control_plane.store import engine

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: ``store.migrate`` places the projections after the upgrade."""


def downgrade() -> None:
    engine.gather_projections(op.get_bind())
