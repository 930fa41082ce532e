"""The audit log: who changed the trust boundary or spoke for the operator, and who was refused.

Recorded: keys created and revoked, every accepted control event (``operator.*``, ``target.*``,
``autonomy.*``: who, what, when), every refused write (403), failed logins and sessions ended by a revocation.
Entries are appended to a bounded in-memory queue and written by one background task in small
transactions, so no request waits on the audit table; a full queue drops the newest entry and counts it
(``outrider_audit_dropped_total``), and the drop is logged. Kept ``audit_retention_days``, apart from events.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from outrider.control_plane import tables
from outrider.control_plane.principals import Principal

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000
FLUSH_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Entry:
    action: str
    outcome: str
    actor: str | None = None
    role: str | None = None
    object: str | None = None
    remote: str | None = None
    detail: dict[str, Any] | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


class AuditLog:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._queue: collections.deque[Entry] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._flushing = threading.Lock()  # the background task and GET /v1/audit may flush at once

    def record(self, action: str, outcome: str, principal: Principal | None = None, *, object: str | None = None,
               remote: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Queue one entry (never blocks, never raises)."""
        if len(self._queue) >= QUEUE_MAX:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("audit: queue full, %d entries dropped so far", self.dropped)
            return
        self._queue.append(Entry(
            action=action, outcome=outcome, actor=principal.key_id if principal else None,
            role=principal.role.value if principal else None, object=(object or "")[:512] or None,
            remote=(remote or "")[:64] or None, detail=detail,
        ))
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.flush)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(FLUSH_SECONDS)  # gather a burst into one transaction
            try:
                await asyncio.to_thread(self.flush)
            except Exception:  # noqa: BLE001 — the audit writer must outlive a database hiccup
                log.warning("audit: writing entries failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                self._wake.set()

    def flush(self) -> None:
        """Write every queued entry (entries stay queued if the write fails)."""
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        batch = list(self._queue)
        if not batch:
            return
        rows = [{
            "time": e.time, "actor": e.actor, "role": e.role, "action": e.action, "object": e.object,
            "outcome": e.outcome, "remote": e.remote, "detail": json.dumps(e.detail) if e.detail is not None else None,
        } for e in batch]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(tables.audit_log), rows)
        for _ in batch:
            self._queue.popleft()

    def read(self, *, after: int = 0, limit: int = 100, action: str | None = None, actor: str | None = None) -> list[dict[str, Any]]:
        t = tables.audit_log
        query = sa.select(t).where(t.c.seq > after).order_by(t.c.seq).limit(limit)
        if action is not None:
            query = query.where(t.c.action == action)
        if actor is not None:
            query = query.where(t.c.actor == actor)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [{
            "seq": row.seq, "time": row.time.replace(tzinfo=UTC) if row.time.tzinfo is None else row.time,
            "actor": row.actor, "role": row.role, "action": row.action, "object": row.object, "outcome": row.outcome,
            "remote": row.remote, "detail": json.loads(row.detail) if row.detail else None,
        } for row in rows]

    def sweep(self, before: datetime) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(sa.delete(tables.audit_log).where(tables.audit_log.c.time < before)).rowcount or 0)
