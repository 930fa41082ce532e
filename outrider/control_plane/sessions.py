"""Server-side console sessions: the cookie carries a random session id, never the API key.

Login (``POST /login``) checks a key and creates a session bound to it; every page resolves the cookie here.
Expiry is the server's (``session_seconds``), not the cookie's; logout ends the session at once, and revoking
the key ends every session it opened. Only the SHA-256 of the id is stored, so a copy of the database opens
no console.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from outrider.control_plane import keys, tables


class SessionStore:
    def __init__(self, engine: sa.Engine, lifetime_seconds: int) -> None:
        self.engine = engine
        self.lifetime = timedelta(seconds=lifetime_seconds)

    def create(self, key_id: str) -> str:
        """A new session for ``key_id``; the id to put in the cookie."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(tables.console_sessions).values(
                session_sha256=keys.digest(session_id), key_id=key_id, created_at=now, expires_at=now + self.lifetime,
                revoked_at=None))
        return session_id

    def key_of(self, session_id: str | None) -> str | None:
        """The key id a live session belongs to; None when unknown, ended or expired."""
        if not session_id or len(session_id) > 128:
            return None
        t = tables.console_sessions
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.key_id, t.c.expires_at, t.c.revoked_at)
                               .where(t.c.session_sha256 == keys.digest(session_id))).first()
        if row is None or row.revoked_at is not None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        return str(row.key_id) if datetime.now(UTC) < expires else None

    def end(self, session_id: str | None) -> None:
        if not session_id:
            return
        t = tables.console_sessions
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.session_sha256 == keys.digest(session_id), t.c.revoked_at.is_(None))
                         .values(revoked_at=datetime.now(UTC)))

    def end_for_key(self, key_id: str) -> int:
        """End every live session of ``key_id`` (its key was revoked); how many."""
        t = tables.console_sessions
        with self.engine.begin() as conn:
            result = conn.execute(sa.update(t).where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
                                  .values(revoked_at=datetime.now(UTC)))
        return int(result.rowcount or 0)

    def sweep(self, before: datetime) -> int:
        t = tables.console_sessions
        with self.engine.begin() as conn:
            return int(conn.execute(sa.delete(t).where(t.c.expires_at < before)).rowcount or 0)
