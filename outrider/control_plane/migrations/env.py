"""Alembic environment: runs the control plane's migrations on the connection the store hands over.

The store calls ``alembic upgrade head`` programmatically at start (see ``store.migrate``), passing its
open connection in ``config.attributes["connection"]``. Run by hand, ``sqlalchemy.url`` from the
config (or ``OUTRIDER_DATABASE_URL``) is used instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from outrider.control_plane import tables

config = context.config
target_metadata = tables.metadata


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("OUTRIDER_DATABASE_URL", "sqlite:///./outrider.db")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("OUTRIDER_DATABASE_URL", "sqlite:///./outrider.db")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
