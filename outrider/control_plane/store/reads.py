"""Reads of the log and of the run records: events in commit order or in time order, one run, runs newest
first. Pooled connections; SQLite in WAL mode and PostgreSQL's MVCC never make them wait for the writer. Any database
error becomes :class:`StoreUnavailable`."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from outrider.control_plane import projection, settings, tables
from outrider.control_plane.store.engine import utc
from outrider.control_plane.store.errors import AmbiguousRun, ProjectionLagging, StoreUnavailable
from outrider.control_plane.store.scope import EVERYTHING, Scope


def _event_filters(query: Any, target: str | None, run_id: str | None, type_: str | None, until: datetime | None,
                   scope: Scope = EVERYTHING) -> Any:
    """``query`` narrowed by the event filters both orders of ``GET /v1/events`` share, within ``scope``."""
    e = tables.events
    for condition in scope.where(e.c.namespace, e.c.target):
        query = query.where(condition)
    if target is not None:
        query = query.where(e.c.target == target)
    if run_id is not None:
        query = query.where(e.c.run_id == run_id)
    if type_ is not None:
        query = query.where(e.c.type == type_)
    if until is not None:
        query = query.where(e.c.time < until.astimezone(UTC))
    return query


class Reads:
    """The store's reads of the log and the run records (a part of :class:`~outrider.control_plane.store.Store`)."""

    engine: sa.Engine
    settings: settings.Settings

    @contextlib.contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A read connection for the modules that compose their own queries (budgets, status), so routes and
        collectors never touch the engine; a database error becomes :class:`StoreUnavailable` (503)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc

    def _read(self, query: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query).all())
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc

    def await_index(self) -> int:
        """Block until the projector's per-event index (``tables.events``) covers the log as it is now, so a read
        of the log sees everything committed before it (at most ``read_wait_max_seconds``, else
        :class:`ProjectionLagging`); the position covered."""
        head = self.log_head()
        reached = self.wait_projected(head, timeout=self.settings.read_wait_max_seconds)
        if reached < head:
            raise ProjectionLagging(reached, head)
        return reached

    def wait_projected(self, position: int, timeout: float = 30.0) -> int:
        """Block until the projection has reached ``position`` (or ``timeout``); the position it reached."""
        deadline = time.monotonic() + timeout
        while (reached := self.projected_position()) < position and time.monotonic() < deadline:
            time.sleep(0.005)
        return reached

    def log_head(self) -> int:
        """The event log's last position (the highest committed seq; 0 when empty)."""
        h = tables.event_log_head
        rows = self._read(sa.select(h.c.seq).where(h.c.id == 1))
        return int(rows[0][0]) if rows else 0

    def projected_position(self) -> int:
        """The log position the projection has reached (its checkpoint)."""
        s = tables.projector_state
        rows = self._read(sa.select(s.c.position).where(s.c.id == 1))
        return int(rows[0][0]) if rows else 0

    def list_events(
        self,
        *,
        target: str | None = None,
        run_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        scope: Scope = EVERYTHING,
    ) -> list[dict[str, Any]]:
        """Events in arrival order after ``after_seq``, filtered; at most ``limit``."""
        rows = self.list_event_rows(
            target=target, run_id=run_id, type=type, since=since, until=until, after_seq=after_seq, limit=limit, scope=scope
        )
        return [{"seq": seq, "received_at": received, "event": json.loads(body)} for seq, received, body in rows]

    def list_event_rows(
        self,
        *,
        target: str | None = None,
        run_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        scope: Scope = EVERYTHING,
    ) -> list[tuple[int, datetime, str]]:
        """Like :meth:`list_events`, but each event as stored: (seq, received_at, body JSON text)."""
        self.await_index()
        e = tables.events
        query = _event_filters(
            sa.select(e.c.seq, e.c.received_at, e.c.body).where(e.c.seq > after_seq), target, run_id, type, until, scope
        )
        if since is not None:
            query = query.where(e.c.time >= since.astimezone(UTC))
        rows = self._read(query.order_by(e.c.seq).limit(limit))
        return [(int(seq), utc(received), body) for seq, received, body in rows]  # type: ignore[misc]

    def list_event_rows_by_time(
        self,
        *,
        target: str | None = None,
        run_id: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: tuple[datetime, int] | None = None,
        limit: int = 100,
        scope: Scope = EVERYTHING,
    ) -> list[tuple[int, datetime, datetime, str]]:
        """Events whose time is in ``[since, until)``, ordered by (time, seq), after the ``after`` position:
        (seq, time, received_at, body JSON text).

        Why a second order: in ``seq`` order a time window is a filter over the primary key, and SQLite (which
        keeps no range statistics) walks every row stored before the window starts — 160–220 ms for a recent
        window at 10^6 events — while forcing the time index makes wide windows slow instead (it must collect
        and sort the whole window to find the lowest seqs). In (time, seq) order every page is a range of
        ``ix_events_time`` (on SQLite its entries are (time, rowid) = (time, seq)) that starts at the cursor
        and stops after ``limit`` rows, whatever the window and however deep the page.
        """
        self.await_index()
        e = tables.events
        query = sa.select(e.c.seq, e.c.time, e.c.received_at, e.c.body)
        lower = since.astimezone(UTC) if since is not None else None
        if after is not None:
            at, seq = after[0].astimezone(UTC), after[1]
            lower = at if lower is None or at > lower else lower  # the range starts at the cursor, not at ``since``
            query = query.where(sa.or_(e.c.time > at, sa.and_(e.c.time == at, e.c.seq > seq)))
        if lower is not None:
            query = query.where(e.c.time >= lower)
        rows = self._read(_event_filters(query, target, run_id, type, until, scope).order_by(e.c.time, e.c.seq).limit(limit))
        return [(int(seq), utc(moment), utc(received), body) for seq, moment, received, body in rows]  # type: ignore[misc]

    def get_run(self, run_id: str, scope: Scope = EVERYTHING) -> dict[str, Any] | None:
        """The run record of ``run_id`` within ``scope``, or None when no event named it there (a run outside the
        scope is not found either: no existence leak); :class:`AmbiguousRun` when several namespaces have it."""
        r = tables.runs
        rows = self._read(sa.select(r.c.namespace, r.c.state).where(r.c.run_id == run_id, *scope.where(r.c.namespace, r.c.target))
                          .order_by(r.c.namespace).limit(20))
        if len(rows) > 1:
            raise AmbiguousRun(run_id, [namespace for namespace, _ in rows])
        return projection.record(run_id, json.loads(rows[0][1]), rows[0][0]) if rows else None

    def list_runs(
        self,
        *,
        target: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
        scope: Scope = EVERYTHING,
    ) -> list[dict[str, Any]]:
        """Run records, newest ``created_at`` first (ties by run id), after the ``before`` position."""
        r = tables.runs
        query = sa.select(r.c.run_id, r.c.state, r.c.namespace).where(*scope.where(r.c.namespace, r.c.target))
        if target is not None:
            query = query.where(r.c.target == target)
        if status is not None:
            query = query.where(r.c.status == status)
        if since is not None:
            query = query.where(r.c.created_at >= since.astimezone(UTC))
        if before is not None:
            at, run_id = before
            at = at.astimezone(UTC)
            query = query.where(sa.tuple_(r.c.created_at, r.c.run_id) < sa.tuple_(at, run_id))  # index range scan
        rows = self._read(query.order_by(r.c.created_at.desc(), r.c.run_id.desc()).limit(limit))
        return [projection.record(run_id, json.loads(state), namespace) for run_id, state, namespace in rows]
