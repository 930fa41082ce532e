"""The durable store: the event log, appended by one group-committing writer per process, and the
projections a projector derives from it (``store.projector``).

The promise: a 2xx from ``POST /v1/events`` (and OTLP ingest) means the events are durably appended to the
log, deduplicated on (source, id). Run records, aggregates and rollups are projections that may lag the log
by a visible amount (``projection_status``; ``consistency`` lets a read wait for a position).

Why one writer per process: a commit costs an fsync. The writer runs in a child process (``writer_process``,
the default) or in a thread of the server (``store_writer = "thread"``); it is the same code either way, and
the projector runs beside it. Requests hand their (already validated) events to :meth:`Store.submit` and
wait; the writer takes everything queued while the previous commit ran (up to ``group_commit_max_events``;
when clients write concurrently it waits up to ``group_commit_max_wait_seconds`` for as many requests as the
previous group had), inserts it with ``INSERT … ON CONFLICT (source, event_id) DO NOTHING`` (which rows
were new: ``RETURNING`` on PostgreSQL, row count and last rowid on SQLite, see ``_insert_events``) and
commits ONCE. Each request then gets its own ``(accepted, duplicates, position)``. If the transaction
fails, the writer retries the group's requests one per transaction, so one request that cannot be stored
does not take the others down; a request whose own transaction fails gets the error (503) and nothing of it
is stored.

Commit order. Readers of the log (the projector, ``GET /v1/events`` paging, SSE resume, log follow) read
``seq > cursor``, so an event must never become visible after one with a higher seq. On PostgreSQL with
several replicas, sequence values are handed out before commit, so two appenders could commit out of order.
Every append transaction therefore first takes ``pg_advisory_xact_lock(APPEND_LOCK)`` and keeps it until it
commits: seqs are drawn (``nextval`` in the INSERT) only while holding the lock, and the lock is released
only after the commit is visible, so the next appender's seqs are all higher than, and commit after, the
previous one's. Hence the committed seqs at any moment are a prefix of all seqs ever committed (gaps aside),
and ``seq > cursor`` never passes over a late commit. Appenders of different replicas wait for each other
only from insert to commit (one group commit); a stuck holder is bounded by ``lock_timeout``
(``write_timeout_seconds``). SQLite has a single writer anyway.

Reads (``list_events``, ``get_run`` …) use pooled connections and never block the writer (SQLite in
WAL mode lets readers proceed during a write; PostgreSQL is MVCC).

Live updates — a small in-process publish/subscribe API::

    subscription = store.subscribe()          # in the event loop; bounded buffer
    try:
        batch = await subscription.next(timeout=15.0)   # list of stored events (dicts), [] on timeout
    finally:
        store.unsubscribe(subscription)

``store.end_subscriptions()`` (called when the server stops) makes ``next`` raise
:class:`SubscriptionEnded`, so open streams finish instead of holding the shutdown.

After each commit the writer offers the group's new events (``{"seq", "received_at", "event"}``, in
``seq`` order) to every subscriber. A subscriber whose buffer is full is dropped (``next`` raises
:class:`SubscriberDropped`), never waited for: a slow client cannot slow ingestion.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from outrider.common import events
from outrider.control_plane import projection, settings, tables
from outrider.control_plane.store import rollups, run_rollups
from outrider.control_plane.store.projector import Projector
from outrider.control_plane.store.sql import Dialect

if TYPE_CHECKING:
    from outrider.control_plane.store import writer_process

log = logging.getLogger(__name__)


#: What an append answers each request: (accepted, duplicates, log position after the commit).
Appended = tuple[int, int, int]
#: The PostgreSQL advisory lock that serializes appends per database (any constant; "ORDR" in ASCII).
APPEND_LOCK = 0x4F52_4452
#: Readiness does not expect a projector sooner than this many lease periods after the store opened (the writer
#: process, which hosts it, is starting; or another replica's projector must first let its lease lapse).
STARTUP_GRACE_LEASES = 2
#: A run's identity in the store: (namespace, run_id).
RunKey = tuple[str, str]
#: The namespace of events that name none, and of everything stored before namespaces existed (migration 0007).
DEFAULT_NAMESPACE = "default"


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """Which tenants a read may see: namespaces and targets (None: all). Built from the caller's principal and
    an optional ``?namespace=`` filter (``Scope.of``); every read that routes and the console make takes one."""

    namespaces: frozenset[str] | None = None
    targets: frozenset[str] | None = None

    @classmethod
    def of(cls, principal: Any, namespace: str | None = None) -> Scope:
        namespaces = principal.namespaces
        if namespace is not None:
            namespaces = frozenset({namespace}) if namespaces is None else namespaces & {namespace}
        return cls(namespaces, principal.targets)

    def sees(self, namespace: str | None, target: str | None) -> bool:
        if self.namespaces is not None and (namespace or DEFAULT_NAMESPACE) not in self.namespaces:
            return False
        return self.targets is None or (target is not None and target in self.targets)

    def only_target(self, target: str | None) -> Scope:
        """This scope narrowed to one target (a ``?target=`` filter); unchanged for None. A target outside the
        principal's bounds narrows to nothing."""
        if target is None:
            return self
        return dataclasses.replace(self, targets=frozenset({target}) if self.targets is None else self.targets & {target})

    def where(self, namespace: Any, target: Any) -> list[Any]:
        """SQL conditions on a table's namespace and target columns."""
        conditions = []
        if self.namespaces is not None:
            conditions.append(namespace.in_(sorted(self.namespaces)))
        if self.targets is not None:
            conditions.append(target.in_(sorted(self.targets)))
        return conditions


#: Every tenant (the operator, admins, /metrics).
EVERYTHING = Scope()


def narrowed(table: Any, scope: Scope, target: str | None = None) -> list[Any]:
    """Conditions of ``scope`` and an optional ``target`` on a rollup table; one without a target column (a
    ``*_all`` table, read only when nothing narrows to targets) takes the namespaces only."""
    if "target" not in table.c:
        return [table.c.namespace.in_(sorted(scope.namespaces))] if scope.namespaces is not None else []
    return [*scope.where(table.c.namespace, table.c.target), *([table.c.target == target] if target is not None else [])]


def over_targets(scope: Scope, target: str | None) -> bool:
    """Whether a read may use the rollups summed over targets: nothing narrows it to some targets."""
    return target is None and scope.targets is None


class AmbiguousRun(Exception):
    """A run id that names runs in several visible namespaces; ``namespaces`` lists them."""

    def __init__(self, run_id: str, namespaces: list[str]) -> None:
        super().__init__(f"run {run_id!r} exists in several namespaces: {', '.join(namespaces)}")
        self.namespaces = namespaces


class RebuildRefused(Exception):
    """A rebuild would lose data (the log was swept); the message says why and how to insist."""


#: Everything the projector derives from the log (a rebuild empties and refills these).
PROJECTION_TABLES = (tables.runs, tables.agg_event_types, tables.agg_llm, tables.agg_prs, tables.agg_runs,
                     tables.agg_run_durations, tables.rollup_llm, tables.rollup_llm_latency, tables.rollup_spend,
                     tables.run_models, tables.rollup_runs, tables.rollup_llm_all, tables.rollup_llm_latency_all,
                     tables.namespace_usage, tables.rollup_runs_all, tables.rollup_runs_day, tables.rollup_model_runs,
                     tables.rollup_model_runs_all)


class StoreUnavailable(Exception):
    """The store could not commit or read; the request must answer 503 and the client retry."""


class SubscriberDropped(Exception):
    """The subscriber fell more than its buffer behind and was disconnected."""


class SubscriptionEnded(Exception):
    """The server is shutting down: the subscriber should finish its response."""


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (SQLite hands back naive UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), and tighten an existing one and its WAL/SHM:
    they hold every log line and traceback agents sent. SQLite creates the WAL and SHM files with the mode of
    the database file, so a 0600 database keeps them 0600 too."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def make_engine(url: str, synchronous: str = "FULL") -> sa.Engine:
    """An engine for ``url``: SQLite in WAL mode with the chosen ``synchronous``, or PostgreSQL via psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _private_file(Path(parsed.database))
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, one fsync per commit
            cursor.execute(f"PRAGMA synchronous={synchronous}")  # FULL: a commit survives a power cut
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision (``alembic upgrade head``), inside one transaction."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("outrider.control_plane") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@dataclasses.dataclass
class _Submission:
    events: Sequence[events.CloudEvent] | LogRows
    #: A concurrent future (:meth:`Store.submit`) or an event loop's future (:meth:`Store.submit_async`).
    future: concurrent.futures.Future[Appended] | asyncio.Future[Appended]


@dataclasses.dataclass
class _Rejection:
    reason: str
    count: int
    future: concurrent.futures.Future[Appended]


@dataclasses.dataclass
class _Probe:
    """A tiny real write (one row of ``store_probe``), to learn whether commits work again."""

    future: concurrent.futures.Future[Appended]


_STOP = object()
#: With the writer in a process of its own, a loop hands its submissions over once about this many events are
#: pending instead of at the end of its iteration, so the writer commits them while the loop parses the rest.
HAND_OVER_EVENTS = 8


def event_json(event: events.CloudEvent) -> bytes:
    """An event as the store keeps it (the JSON of the ``events.body`` column): what
    ``model_dump_json(exclude_none=True)`` gives, without its Python wrapper, since this runs once per event."""
    return event.__pydantic_serializer__.to_json(event, exclude_none=True)


#: An event as the log appends it: (source, id, type, time as ``projection.iso`` text, target, run id, namespace,
#: body JSON). A writer process receives these from the server, so it never parses or validates events again.
LogRow = tuple[str, str, str, str, str | None, str | None, str, str]


class LogRows(list[LogRow]):
    """A submission's events already turned into :data:`LogRow` s (what the writer process is handed)."""


def log_rows(batch: Sequence[events.CloudEvent] | LogRows) -> Sequence[LogRow]:
    """The :data:`LogRow` s of validated events (or the rows themselves)."""
    if isinstance(batch, LogRows):
        return batch
    iso = projection.iso
    return [(event.source, event.id, event.type, iso(event.time), event.target, event.runid,
             event.namespace or DEFAULT_NAMESPACE, event_json(event).decode()) for event in batch]


def _settle(future: concurrent.futures.Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    """Resolve a request's future unless the request gave up waiting (cancelled it) meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def _answer_in_loop(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """Settle a loop's futures (runs in that loop); a request that gave up waiting cancelled its future."""
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _resolve(answers: list[tuple[Any, Any]]) -> None:
    """Settle requests' futures with a result or an exception: concurrent futures at once, event-loop futures
    with ONE call into each loop for the whole group (a wake-up per request costs the loop more than the
    request's own work when single events arrive from many clients)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for future, outcome in answers:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        elif isinstance(outcome, BaseException):
            _settle(future, exception=outcome)
        else:
            _settle(future, result=outcome)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_answer_in_loop, items)


class Subscription:
    """One live-stream client's bounded buffer of committed events; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_events: int) -> None:
        self.loop = loop
        self.max_events = max_events
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.dropped = False
        self.ended = False
        self._wake = asyncio.Event()

    def _end(self) -> None:  # runs in the subscriber's loop
        self.ended = True
        self._wake.set()

    def _offer(self, items: list[dict[str, Any]]) -> None:  # runs in the subscriber's loop
        if self.dropped:
            return
        if len(self.buffer) + len(items) > self.max_events:
            self.dropped = True
            self.buffer.clear()
        else:
            self.buffer.extend(items)
        self._wake.set()

    async def next(self, timeout: float) -> list[dict[str, Any]]:
        """The events committed since the last call; [] after ``timeout`` seconds without any."""
        if not self.buffer and not self.dropped and not self.ended:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        if self.dropped:
            raise SubscriberDropped
        if self.ended and not self.buffer:
            raise SubscriptionEnded
        items = list(self.buffer)
        self.buffer.clear()
        return items


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


class Store:
    """The control plane's store; :meth:`open` migrates and starts the writer, :meth:`close` stops it."""

    def __init__(self, config: settings.Settings) -> None:
        self.settings = config
        self.engine = make_engine(config.database_url, config.sqlite_synchronous)
        self.dialect = self.engine.dialect.name
        # SimpleQueue (C): a put from the event loop costs ~1 µs, not the ~10 µs of queue.Queue's Python locking.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        #: The writer in a child process (``store_writer = "process"``), when :meth:`open` started one.
        self._remote: writer_process.RemoteWriter | None = None
        self._subscribers: set[Subscription] = set()
        self._subscribers_lock = threading.Lock()
        self.sql = Dialect(self.dialect)
        #: Per event loop, the submissions not yet handed to the writer (see :meth:`_hand_over`).
        self._pending: dict[asyncio.AbstractEventLoop, list[_Submission]] = {}
        #: The projector of this process (beside the writer: a thread here, or in the writer's child process).
        self.projector: Projector | None = None
        self._opened_at = time.monotonic()
        #: Why the last group commit failed, until a later commit succeeds; readiness reports it.
        self.last_commit_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        self._opened_at = time.monotonic()
        migrate(self.engine)
        if self.settings.store_writer == "process":
            from outrider.control_plane.store import writer_process  # it imports this module

            self._remote = writer_process.RemoteWriter(self)
            self._remote.start()
            return
        self.start_projector()
        self._writer = threading.Thread(target=self._run_writer, name="outrider-store-writer", daemon=True)
        self._writer.start()

    def start_projector(self, name: str | None = None) -> None:
        """Run the projector beside the writer (in this process), unless the settings turn it off. ``name``: the
        lease holder's name (the server chooses it for its writer process, to release the lease if it must
        kill that process)."""
        if not self.settings.projector_enabled:
            return
        self.projector = Projector(self.engine, batch_events=self.settings.projector_batch_events,
                                   poll_seconds=self.settings.projector_poll_seconds,
                                   lease_seconds=self.settings.projector_lease_seconds, name=name)
        self.projector.start()

    def close(self) -> None:
        if self._remote is not None:
            self._remote.stop()
            self.release_lease(self._remote.projector_name)  # the child may have been killed holding it
            self._remote = None
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
            self._writer = None
        if self.projector is not None:
            self.projector.stop()
            self.projector = None
        self.engine.dispose()

    @property
    def writer_alive(self) -> bool:
        if self._remote is not None:
            return self._remote.alive
        return self._writer is not None and self._writer.is_alive()

    def _put(self, item: Any) -> None:
        """Hand an item (a submission, a loop's list of them, a rejection count, a probe) to the writer."""
        if self._remote is not None:
            self._remote.put(item)
        else:
            self._queue.put(item)

    # --- writing -----------------------------------------------------------------------------------

    def submit(self, batch: Sequence[events.CloudEvent]) -> concurrent.futures.Future[Appended]:
        """Queue validated events for the next group commit; the future gives (accepted, duplicates)."""
        future: concurrent.futures.Future[Appended] = concurrent.futures.Future()
        if not self.writer_alive:
            future.set_exception(StoreUnavailable("the store writer is not running"))
            return future
        self._put(_Submission(batch, future))
        return future

    def submit_async(self, batch: Sequence[events.CloudEvent]) -> asyncio.Future[Appended]:
        """Like :meth:`submit`, called from the running event loop, which gets a future of its own: the
        writer answers all of a group's requests from one loop with a single call into it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Appended] = loop.create_future()
        if not self.writer_alive:
            future.set_exception(StoreUnavailable("the store writer is not running"))
            return future
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(_Submission(batch, future))
        if self._remote is not None and len(pending) * len(batch) >= HAND_OVER_EVENTS:
            self._hand_over(loop)  # a writer process can commit these while this loop parses the rest
        return future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """Queue what a loop submitted since the last hand-over as ONE item (runs in that loop, soon after the
        first of them): the writer thread wakes once for them, not once per request."""
        submissions = self._pending.pop(loop, None)
        if submissions:
            self._put(submissions)

    def count_rejection(self, reason: str, count: int = 1) -> concurrent.futures.Future[Appended]:
        """Count refused events under ``reason``, committed with the next group (the future tells when)."""
        future: concurrent.futures.Future[Appended] = concurrent.futures.Future()
        if not self.writer_alive:
            future.set_exception(StoreUnavailable("the store writer is not running"))
            return future
        self._put(_Rejection(reason, count, future))
        return future

    async def record_rejection(self, reason: str, count: int = 1) -> None:
        """Count a refusal and wait (briefly) for it to be committed, so /metrics shows it once the client has
        its answer; a store failure here is logged, never turned into a different answer."""
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.count_rejection(reason, count)), timeout=5)
        except (StoreUnavailable, TimeoutError):
            log.warning("could not count a rejection (%s)", reason, exc_info=True)

    def _run_writer(self) -> None:
        cap = self.settings.group_commit_max_events
        max_wait = self.settings.group_wait_seconds()
        expected = 1  # requests in the previous group: how many clients are writing concurrently
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group = first if isinstance(first, list) else [first]  # a list: one loop's hand-over
            size = sum(len(item.events) for item in group if isinstance(item, _Submission))
            stop = False
            # Take what is queued; while fewer requests than last time have arrived, wait briefly for the rest
            # (they are usually being parsed right now), so concurrent clients share one fsync instead of the
            # groups alternating between 1 and N-1. A lone sequential client (expected == 1) never waits.
            deadline = time.monotonic() + max_wait
            while size < cap:
                try:
                    if len(group) < expected:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    else:
                        item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                items = item if isinstance(item, list) else [item]
                group.extend(items)
                size += sum(len(each.events) for each in items if isinstance(each, _Submission))
            expected = len(group)
            self._commit_group(group)
            if stop:
                return

    def _commit_group(self, group: list[Any]) -> None:
        """Commit a group in one transaction; if it fails, retry its items one by one, so one request that
        cannot be stored does not fail the others. Each request stays all or nothing either way."""
        if self._commit(group) or len(group) == 1:
            return
        for item in group:
            self._commit([item])

    def _commit(self, group: list[Any]) -> bool:
        try:
            with self.engine.begin() as conn:
                results, new_events = self._write(conn, group)
        except Exception as exc:  # noqa: BLE001 — every waiting request must hear about any failure
            log.exception("commit of %d queued items failed", len(group))
            self.last_commit_error = f"{type(exc).__name__}: {exc}"[:500]
            if len(group) == 1:
                _resolve([(group[0].future, StoreUnavailable(f"commit failed: {type(exc).__name__}"))])
            return False
        self.last_commit_error = None
        if self.projector is not None:
            self.projector.wake()
        if new_events:  # subscribers hear of the events no later than their posters
            self._publish(new_events)
        _resolve([(item.future, result) for item, result in zip(group, results, strict=True)])
        return True

    def _write(self, conn: sa.Connection, group: list[Any]) -> tuple[list[tuple[int, int, int]], list[dict[str, Any]]]:
        received_at = datetime.now(UTC)
        rejections: collections.Counter[str] = collections.Counter()
        received = self.sql.time(received_at)
        text_times = self.dialect == "sqlite"
        cursor = conn.connection.cursor()  # the transaction's own DBAPI cursor: the hot path skips SQLAlchemy
        if not text_times:
            # Appends are serialized per database, so events commit in seq order (see "Commit order" above).
            cursor.execute(f"SET LOCAL lock_timeout = '{int(self.settings.write_timeout_seconds * 1000)}ms'")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        # One row per distinct (source, id) of the whole group, owned by the first request that carries it;
        # every other occurrence (in the same request or a later one) is that request's duplicate. ``found``
        # keeps, per key: (owner's index, body JSON).
        found: dict[tuple[str, str], tuple[int, str]] = {}
        rows: list[tuple[Any, ...]] = []
        for index, item in enumerate(group):
            if isinstance(item, _Rejection):
                rejections[item.reason] += item.count
            elif isinstance(item, _Probe):
                conn.execute(sa.delete(tables.store_probe))
                conn.execute(sa.insert(tables.store_probe), {"id": 1, "written_at": received_at})
            else:
                for source, event_id, kind, when, target, run_id, namespace, body in log_rows(item.events):
                    key = (source, event_id)
                    if key in found:
                        continue
                    # SQLite's column format ("YYYY-MM-DD HH:MM:SS.ffffff", UTC) is a slice of the fixed-width
                    # ISO text; PostgreSQL takes the datetime.
                    stored: Any = f"{when[:10]} {when[11:26]}" if text_times else datetime.fromisoformat(when)
                    found[key] = (index, body)
                    rows.append((source, event_id, kind, stored, target, run_id, received, body, namespace))
        returned, position = self._insert_events(cursor, rows)
        accepted = [0] * len(group)
        inserted: list[tuple[int, str]] = []
        for seq, source, event_id in returned:
            entry = found[(source, event_id)]
            accepted[entry[0]] += 1
            inserted.append((seq, entry[1]))
        results = [
            (accepted[index], len(item.events) - accepted[index], position) if isinstance(item, _Submission) else (0, 0, position)
            for index, item in enumerate(group)
        ]
        if rejections:
            self.sql.bump(cursor, "agg_rejections", ("reason",), ("count",), list(rejections.items()))
        published = []
        if inserted and self._has_listeners():  # parsed again only when someone listens
            inserted.sort()  # by seq (unique): RETURNING promises no order
            published = [{"seq": seq, "received_at": received_at.isoformat(), "event": json.loads(body)} for seq, body in inserted]
        return results, published

    #: Columns of the events insert, in the order of the tuples ``_write`` builds.
    EVENT_COLUMNS = ("source", "event_id", "type", "time", "target", "run_id", "received_at", "body", "namespace")
    #: Rows per INSERT statement: 9 parameters each stays far below SQLite's and PostgreSQL's limits.
    INSERT_CHUNK = 500

    def _insert_events(self, cursor: Any, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[int, str, str]], int]:
        """Insert event rows, skipping (source, event_id) already stored; (seq, source, event_id) of the new ones,
        and the log position after the insert (the highest seq stored: every event of the group is at or below it).

        Written as multi-row ``INSERT … ON CONFLICT (source, event_id) DO NOTHING`` (``RETURNING`` the new rows
        on PostgreSQL) on the DBAPI cursor: this is the ingestion hot path, and SQLAlchemy's per-row parameter
        processing cost more than the insert itself.
        """
        sqlite = self.dialect == "sqlite"
        mark = "?" if sqlite else "%s"
        row_marks = "(" + ", ".join([mark] * len(self.EVENT_COLUMNS)) + ")"
        returned: list[tuple[int, str, str]] = []
        cursor.execute("SELECT max(seq) FROM events")
        last = cursor.fetchone()[0] or 0
        for start in range(0, len(rows), self.INSERT_CHUNK):
            chunk = rows[start : start + self.INSERT_CHUNK]
            sql = (
                f"INSERT INTO events ({', '.join(self.EVENT_COLUMNS)}) VALUES {', '.join([row_marks] * len(chunk))} "
                "ON CONFLICT (source, event_id) DO NOTHING"
            )
            params = list(itertools.chain.from_iterable(chunk))  # flattened in C, not by a generator
            if not sqlite:
                cursor.execute(sql + " RETURNING seq, source, event_id", params)
                fresh = cursor.fetchall()  # (seq, source, event_id), seq as int
                returned.extend(fresh)
                last = max([last, *(row[0] for row in fresh)])
                continue
            # SQLite: without RETURNING, whose rows SQLite steps through one at a time, releasing and taking back
            # the GIL for each (the event loop, parsing the next requests, often takes it in between). New rows
            # get seqs above every stored one (AUTOINCREMENT, one writer); when all ``n`` rows of the chunk were
            # new and the seqs grew by exactly ``n``, the rows hold those seqs in VALUES order. Otherwise
            # (duplicates, or a gap) the new rows are read back.
            before = last
            cursor.execute(sql, params)
            inserted = cursor.rowcount
            if inserted <= 0:
                continue
            last = cursor.lastrowid
            if inserted == len(chunk) and last - before == inserted:
                returned.extend((seq, row[0], row[1]) for seq, row in zip(range(before + 1, last + 1), chunk, strict=True))
            else:
                cursor.execute("SELECT seq, source, event_id FROM events WHERE seq > ? AND seq <= ?", (before, last))
                returned.extend(cursor.fetchall())
        return returned, int(last)


    # --- live updates ------------------------------------------------------------------------------

    def subscribe(self, max_events: int | None = None) -> Subscription:
        """A new subscription to committed events; call from the event loop that will read it."""
        sub = Subscription(asyncio.get_running_loop(), max_events or self.settings.sse_queue_events)
        with self._subscribers_lock:
            self._subscribers.add(sub)
            if len(self._subscribers) == 1 and self._remote is not None:
                self._remote.put(("listeners", True))  # under the lock: the child learns the transitions in order
        return sub

    def end_subscriptions(self) -> None:
        """Tell every subscriber to finish (server shutdown): ``next`` raises :class:`SubscriptionEnded`."""
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub._end)

    def unsubscribe(self, sub: Subscription) -> None:
        with self._subscribers_lock:
            if sub in self._subscribers:
                self._subscribers.discard(sub)
                if not self._subscribers and self._remote is not None:
                    self._remote.put(("listeners", False))

    def _has_listeners(self) -> bool:
        """Whether a commit should build live-update items (the writer process overrides this)."""
        return bool(self._subscribers)

    def _publish(self, items: list[dict[str, Any]]) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.dropped:
                self.unsubscribe(sub)
                continue
            try:
                sub.loop.call_soon_threadsafe(sub._offer, items)
            except RuntimeError:  # the subscriber's loop is closed
                self.unsubscribe(sub)

    # --- reading -----------------------------------------------------------------------------------

    def ping(self, probe_timeout: float = 5.0) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers, the writer runs and commits work.

        The message names the failing dependency only (readiness is unauthenticated): the database's own
        error text, which can carry paths, hosts or SQL, goes to the log.

        Reading alone is not enough: a full disk or a read-only file still answers ``SELECT 1``. So after
        a failed commit, ping sends a tiny real write through the writer; its success clears the failure,
        which makes readiness recover on its own once the fault is gone.
        """
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(1)).scalar_one()
        except Exception as exc:
            log.warning("readiness: the database does not answer", exc_info=True)
            raise StoreUnavailable("database unreachable") from exc
        if not self.writer_alive:
            raise StoreUnavailable("the store writer is not running")
        failure = self.last_commit_error
        if failure is None:
            self._check_projector()
            return
        future: concurrent.futures.Future[Appended] = concurrent.futures.Future()
        self._put(_Probe(future))
        try:
            future.result(timeout=probe_timeout)
        except concurrent.futures.TimeoutError as exc:
            log.warning("readiness: commits are failing (%s); a write probe timed out", failure)
            raise StoreUnavailable("commits are failing; a write probe timed out") from exc
        except StoreUnavailable as exc:
            log.warning("readiness: commits are failing (%s)", self.last_commit_error or failure)
            raise StoreUnavailable("commits are failing") from exc
        self._check_projector()

    def _check_projector(self) -> None:
        stopped = self.projector_stopped()
        if stopped is not None:
            raise StoreUnavailable(stopped)

    # --- the projection's progress ----------------------------------------------------------------

    def release_lease(self, holder: str) -> None:
        """Give up ``holder``'s projector lease, so a standby (or the next start) takes over at once instead of
        after the lease lapses; nothing when another holds it."""
        s = tables.projector_state
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.update(s).where(s.c.id == 1, s.c.holder == holder).values(holder=None, heartbeat_at=None))
        except sa.exc.SQLAlchemyError:
            log.warning("could not release the projector lease of %s", holder, exc_info=True)

    def wait_projected(self, position: int, timeout: float = 30.0) -> int:
        """Block until the projection has reached ``position`` (or ``timeout``); the position it reached."""
        deadline = time.monotonic() + timeout
        while (reached := self.projected_position()) < position and time.monotonic() < deadline:
            time.sleep(0.005)
        return reached

    def log_head(self) -> int:
        """The event log's last position (the highest committed seq; 0 when empty)."""
        e = tables.events
        return int(self._read(sa.select(sa.func.max(e.c.seq)))[0][0] or 0)

    def projected_position(self) -> int:
        """The log position the projection has reached (its checkpoint)."""
        s = tables.projector_state
        rows = self._read(sa.select(s.c.position).where(s.c.id == 1))
        return int(rows[0][0]) if rows else 0

    #: The projection lag in events is counted up to this many (a count past it costs more than it tells).
    LAG_COUNT_CAP = 1_000_000

    def projection_status(self, now: float | None = None) -> dict[str, Any]:
        """Where the projection stands against the log: ``position`` (checkpoint), ``head`` (last seq in the
        log), ``lag_events`` (log events after the checkpoint, counted up to :data:`LAG_COUNT_CAP`),
        ``lag_seconds`` (how long the oldest unprojected event has been waiting; 0 when none waits),
        ``holder`` and ``heartbeat_age_seconds`` of the lease (None when nobody holds it)."""
        now = time.time() if now is None else now
        s, e = tables.projector_state, tables.events
        try:
            with self.engine.connect() as conn:
                state = conn.execute(sa.select(s).where(s.c.id == 1)).one()
                head = conn.execute(sa.select(sa.func.max(e.c.seq))).scalar() or 0
                waiting = sa.select(e.c.seq).where(e.c.seq > state.position).limit(self.LAG_COUNT_CAP).subquery()
                lag_events = conn.execute(sa.select(sa.func.count()).select_from(waiting)).scalar() or 0
                oldest = conn.execute(sa.select(e.c.received_at).where(e.c.seq > state.position).order_by(e.c.seq).limit(1)).scalar()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        oldest_at = utc(oldest)
        return {
            "position": int(state.position),
            "head": int(head),
            "lag_events": int(lag_events),
            "lag_seconds": max(0.0, now - oldest_at.timestamp()) if oldest_at is not None else 0.0,
            "holder": state.holder,
            "heartbeat_age_seconds": max(0.0, now - state.heartbeat_at) if state.heartbeat_at is not None and state.holder else None,
            "projected_at": state.projected_at,
            "swept_through": int(state.swept_through),
        }

    def projection_lag_seconds(self, now: float | None = None) -> float:
        """How long the oldest unprojected event has waited (0 when none waits): two index lookups, cheap enough
        for every console page."""
        now = time.time() if now is None else now
        s, e = tables.projector_state, tables.events
        position = sa.select(s.c.position).where(s.c.id == 1).scalar_subquery()
        rows = self._read(sa.select(e.c.received_at).where(e.c.seq > position).order_by(e.c.seq).limit(1))
        oldest = utc(rows[0][0]) if rows else None
        return max(0.0, now - oldest.timestamp()) if oldest is not None else 0.0

    def projector_stopped(self, status: dict[str, Any] | None = None) -> str | None:
        """Why no projector works for this database (readiness), or None when one does."""
        status = status or self.projection_status()
        if self.settings.projector_enabled and self.projector is None and self._remote is None:
            return "the projector of this replica is not running"
        age = status["heartbeat_age_seconds"]
        starting = time.monotonic() - self._opened_at < STARTUP_GRACE_LEASES * self.settings.projector_lease_seconds
        if (age is None or age > self.settings.projector_lease_seconds) and not starting:
            return "no projector holds the lease (none running for this database)"
        return None

    def rebuild(self, *, force: bool = False) -> int:
        """Replay the whole log into fresh projections (``outrider store rebuild``); how many events it projected.

        Empties every projection and resets the checkpoint in one transaction (any projector working at the
        time is fenced off by the version change), then projects the log in this process under the lease. A
        log a retention sweep has shortened cannot give back what was swept (run records and totals of
        deleted events), so that needs ``force``."""
        s = tables.projector_state
        swept = int(self._read(sa.select(s.c.swept_through).where(s.c.id == 1))[0][0])
        if swept and not force:
            raise RebuildRefused(
                f"a retention sweep deleted events up to seq {swept}: a rebuild would lose their runs and totals "
                "(use --force to rebuild from what is left)")
        holder = f"rebuild:{os.getpid()}"
        with self.engine.begin() as conn:
            for table in PROJECTION_TABLES:
                conn.execute(sa.delete(table))
            conn.execute(sa.update(s).where(s.c.id == 1).values(position=0, version=s.c.version + 1, holder=holder,
                                                                 heartbeat_at=time.time(), projected_at=None))
        projector = Projector(self.engine, batch_events=self.settings.projector_batch_events,
                              lease_seconds=self.settings.projector_lease_seconds, name=holder)
        try:
            return projector.run_until_caught_up(timeout=24 * 3600)
        finally:
            projector._release()

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

    def summary_facts(self, since: datetime, scope: Scope = EVERYTHING) -> dict[str, Any]:
        """What ``GET /v1/runs/summary`` needs about runs created at or after ``since``, aggregated in SQL.

        ``by_status``: status → {count, input_tokens, output_tokens, cost_nano_usd, priced, pr_count};
        ``durations``: durations of finished runs (for percentiles); ``latest_failure``: the failed run with
        the latest completion, or None.
        """
        r = tables.runs
        since = since.astimezone(UTC)
        window = sa.and_(r.c.created_at >= since, *scope.where(r.c.namespace, r.c.target))
        totals = (
            sa.select(
                r.c.status,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(r.c.input_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.output_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.cost_nano_usd), 0),
                sa.func.count(r.c.cost_nano_usd),
                sa.func.coalesce(sa.func.sum(r.c.pr_count), 0),
            )
            .where(window)
            .group_by(r.c.status)
        )
        durations = sa.select(r.c.duration_seconds).where(
            window, r.c.status.in_(list(projection.TERMINAL)), r.c.duration_seconds.is_not(None)
        )
        finished_at = sa.func.coalesce(r.c.completed_at, r.c.created_at)
        latest_id = (  # found in the covering status index; only the one row found is read
            sa.select(r.c.run_id)
            .where(window, r.c.status == "failed")
            .order_by(finished_at.desc(), r.c.run_id.desc())
            .limit(1)
            .scalar_subquery()
        )
        latest = sa.select(r.c.run_id, r.c.target, r.c.completed_at, r.c.error_summary).where(r.c.run_id == latest_id, window)
        try:
            with self.engine.connect() as conn:
                by_status = {
                    status: {
                        "count": int(count),
                        "input_tokens": int(tokens_in),
                        "output_tokens": int(tokens_out),
                        "cost_nano_usd": int(cost),
                        "priced": int(priced),
                        "pr_count": int(prs),
                    }
                    for status, count, tokens_in, tokens_out, cost, priced, prs in conn.execute(totals)
                }
                spans = [float(value) for (value,) in conn.execute(durations)]
                failure = conn.execute(latest).first()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        latest_failure = None
        if failure is not None:
            latest_failure = {
                "run_id": failure.run_id,
                "target": failure.target,
                "completed_at": utc(failure.completed_at),
                "error_summary": failure.error_summary,
            }
        return {"by_status": by_status, "durations": spans, "latest_failure": latest_failure}

    def finished_groups(self, since: datetime, column: str, scope: Scope = EVERYTHING) -> list[tuple[str | None, str, int]]:
        """(value of ``column``, status, count) over finished runs created from the hour holding ``since`` on, read
        from the run rollups: summed over targets when neither ``column`` nor the scope needs them; otherwise whole
        days from the daily rollup and the hours of the first, partial day from the hourly one. Either way the
        rows read grow with days × targets × error kinds, not with runs."""
        first_hour = rollups.hour_of(since.timestamp())
        parts: list[tuple[Any, str, int, int | None]]
        if column != "target" and over_targets(scope, None):
            parts = [(tables.rollup_runs_all, "hour", first_hour, None)]
        else:
            first_day = -(-first_hour // run_rollups.HOURS_PER_DAY)
            parts = [(tables.rollup_runs, "hour", first_hour, first_day * run_rollups.HOURS_PER_DAY),
                     (tables.rollup_runs_day, "day", first_day, None)]
        counts: collections.Counter[tuple[str | None, str]] = collections.Counter()
        for u, unit, low, high in parts:
            key = u.c[column]
            where = [u.c.axis == "created", u.c[unit] >= low, u.c.status.in_(list(projection.TERMINAL)), *narrowed(u, scope)]
            if high is not None:
                where.append(u.c[unit] < high)
            for value, status, count in self._read(sa.select(key, u.c.status, sa.func.sum(u.c["count"])).where(*where).group_by(key, u.c.status)):
                counts[(value or None, status)] += int(count)
        return [(value, status, count) for (value, status), count in counts.items() if count]

    def aggregates(self) -> dict[str, list[dict[str, Any]]]:
        """Everything ``/metrics`` reports from the store, read from the small ``agg_*`` tables only (finished
        runs and duration buckets are kept there by ``run_aggregates``; rows whose count fell to zero are left out)."""
        queries: dict[str, Any] = {
            "event_types": sa.select(tables.agg_event_types),
            "rejections": sa.select(tables.agg_rejections),
            "llm": sa.select(tables.agg_llm),
            "prs": sa.select(tables.agg_prs),
            "runs": sa.select(tables.agg_runs).where(tables.agg_runs.c.count > 0),
            "durations": sa.select(tables.agg_run_durations).where(tables.agg_run_durations.c.count > 0),
        }
        try:
            with self.engine.connect() as conn:
                return {name: [row._asdict() for row in conn.execute(q)] for name, q in queries.items()}
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc

    def namespace_usage(self) -> dict[str, tuple[int, int]]:
        """namespace → (events, bytes) it keeps in the log, as far as the projection has counted (``quota.py``)."""
        u = tables.namespace_usage
        return {str(namespace): (int(count), int(size)) for namespace, count, size in self._read(sa.select(u.c.namespace, u.c.events, u.c.bytes))}

    def reported_targets(self) -> list[tuple[str, str]]:
        """(namespace, target) of every Target the operator reported (``target.status``), newest report first:
        the label values /metrics keeps however many made-up targets clients send."""
        e = tables.events
        query = (sa.select(e.c.namespace, e.c.target, sa.func.max(e.c.seq).label("last"))
                 .where(e.c.type == events.EventType.TARGET_STATUS.value, e.c.target.is_not(None))
                 .group_by(e.c.namespace, e.c.target).order_by(sa.desc("last")))
        return [(str(namespace), str(target)) for namespace, target, _ in self._read(query)]

    # --- insights (trends, models, graph, logs, retention) -----------------------------------------

    def _bucket(self, column: Any, start: datetime, size: int) -> Any:
        """SQL for the bucket index of ``column``: whole seconds since ``start`` divided by ``size`` (integers, exact)."""
        origin = int(start.timestamp())
        if self.dialect == "postgresql":
            seconds = sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)
        else:
            seconds = sa.cast(sa.func.strftime("%s", column), sa.Integer)
        return (seconds - origin) // size  # both operands integers and >= 0 (the WHERE clause): exact floor

    def trend_cells(self, start: datetime, size: int, target: str | None,
                    scope: Scope = EVERYTHING) -> tuple[dict[int, int], list[tuple[int, str, int, int, int, int, int]]]:
        """Runs bucketed from ``start`` in buckets of ``size`` seconds: started per bucket, and per (bucket, status)
        of the finished ones: (bucket, status, count, tokens, cost_nano_usd, priced, prs).

        Whole-hour buckets that start on an hour (every bucket of 1 h or more: they start at multiples of their
        size) are read from the hourly run rollup (summed over targets when nothing narrows to targets); shorter ones from the run records (:meth:`_trend_cells_of_runs`)."""
        origin = int(start.timestamp())
        if size % rollups.HOUR or origin % rollups.HOUR:
            return self._trend_cells_of_runs(start, size, target, scope)
        u = tables.rollup_runs_all if over_targets(scope, target) else tables.rollup_runs
        where = [u.c.hour >= origin // rollups.HOUR, *narrowed(u, scope, target)]
        started_rows = sa.select(u.c.hour, sa.func.sum(u.c["count"])).where(u.c.axis == "started", *where).group_by(u.c.hour)
        finished_rows = (
            sa.select(u.c.hour, u.c.status, sa.func.sum(u.c["count"]), sa.func.sum(u.c.tokens), sa.func.sum(u.c.cost_nano_usd),
                      sa.func.sum(u.c.priced), sa.func.sum(u.c.prs))
            .where(u.c.axis == "completed", u.c.status.in_(list(projection.TERMINAL)), *where).group_by(u.c.hour, u.c.status)
        )
        counts: dict[int, int] = collections.Counter()
        cells: dict[tuple[int, str], list[int]] = {}
        for hour, count in self._read(started_rows):
            counts[(int(hour) * rollups.HOUR - origin) // size] += int(count)
        for hour, status, count, tokens, cost, priced, prs in self._read(finished_rows):
            cell = cells.setdefault(((int(hour) * rollups.HOUR - origin) // size, status), [0, 0, 0, 0, 0])
            for index, value in enumerate((count, tokens, cost, priced, prs)):
                cell[index] += int(value or 0)
        return ({b: n for b, n in counts.items() if n},
                [(b, status, *cell) for (b, status), cell in sorted(cells.items()) if cell[0]])  # type: ignore[misc]

    def _trend_cells_of_runs(self, start: datetime, size: int, target: str | None,
                             scope: Scope = EVERYTHING) -> tuple[dict[int, int], list[tuple[int, str, int, int, int, int, int]]]:
        """:meth:`trend_cells` bucketed in SQL over the run records, for buckets shorter than an hour."""
        r = tables.runs
        start = start.astimezone(UTC)
        scope_ = ([] if target is None else [r.c.target == target]) + scope.where(r.c.namespace, r.c.target)
        started_bucket = self._bucket(r.c.started_at, start, size).label("b")
        started = sa.select(started_bucket, sa.func.count()).where(r.c.started_at >= start, *scope_).group_by(started_bucket)
        done_bucket = self._bucket(r.c.completed_at, start, size).label("b")
        finished = (
            sa.select(
                done_bucket, r.c.status, sa.func.count(), sa.func.coalesce(sa.func.sum(r.c.input_tokens + r.c.output_tokens), 0),
                sa.func.coalesce(sa.func.sum(r.c.cost_nano_usd), 0), sa.func.count(r.c.cost_nano_usd),
                sa.func.coalesce(sa.func.sum(r.c.pr_count), 0),
            )
            .where(r.c.completed_at >= start, r.c.status.in_(list(projection.TERMINAL)), *scope_)
            .group_by(done_bucket, r.c.status)
        )
        try:
            with self.engine.connect() as conn:
                counts = {int(b): int(n) for b, n in conn.execute(started)}
                cells = [
                    (int(b), status, int(n), int(tokens), int(cost), int(priced), int(prs))
                    for b, status, n, tokens, cost, priced, prs in conn.execute(finished)
                ]
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        return counts, cells

    def event_times(self, kind: str, since: datetime, target: str | None, scope: Scope = EVERYTHING) -> list[datetime]:
        """Times of the stored events of type ``kind`` at or after ``since`` (index on (type, time))."""
        e = tables.events
        query = sa.select(e.c.time).where(e.c.type == kind, e.c.time >= since.astimezone(UTC), *scope.where(e.c.namespace, e.c.target))
        if target is not None:
            query = query.where(e.c.target == target)
        return [utc(moment) for (moment,) in self._read(query)]  # type: ignore[misc]

    def model_facts(self, since: datetime, target: str | None, scope: Scope = EVERYTHING) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (provider, model), over the hourly rollups from the hour holding ``since`` on: ``calls``,
        ``errors``, ``input_tokens``, ``output_tokens``, ``cost_nano_usd``, ``priced`` (calls with a cost),
        ``latency_buckets`` (the latency histogram, ``rollups.latency_bucket`` indexes) and ``runs`` (status →
        distinct runs whose first call to the model falls in the window, from ``rollup_model_runs``). Reads rollup
        rows, never calls nor runs; summed over targets when nothing narrows to targets, so the cost grows with
        hours × models, not with the number of events or runs."""
        u, h, m = tables.rollup_llm, tables.rollup_llm_latency, tables.rollup_model_runs
        if over_targets(scope, target):
            u, h, m = tables.rollup_llm_all, tables.rollup_llm_latency_all, tables.rollup_model_runs_all
        first_hour = rollups.hour_of(since.timestamp())

        def where(table: Any) -> list[Any]:
            return [table.c.hour >= first_hour, *narrowed(table, scope, target)]

        key = (u.c.provider, u.c.model)
        totals = sa.select(*key, sa.func.sum(u.c.calls), sa.func.sum(u.c.errors), sa.func.sum(u.c.input_tokens),
                           sa.func.sum(u.c.output_tokens), sa.func.sum(u.c.cost_nano_usd), sa.func.sum(u.c.priced)
                           ).where(*where(u)).group_by(*key)
        latencies = sa.select(h.c.provider, h.c.model, h.c.bucket, sa.func.sum(h.c.count)).where(*where(h)).group_by(
            h.c.provider, h.c.model, h.c.bucket)
        runs = sa.select(m.c.provider, m.c.model, m.c.status, sa.func.sum(m.c["count"])).where(*where(m)).group_by(
            m.c.provider, m.c.model, m.c.status)
        facts: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            with self.engine.connect() as conn:
                for provider, model, calls, errors, tokens_in, tokens_out, cost, priced in conn.execute(totals):
                    facts[(provider, model)] = {
                        "calls": int(calls), "errors": int(errors or 0), "input_tokens": int(tokens_in or 0),
                        "output_tokens": int(tokens_out or 0), "cost_nano_usd": int(cost or 0), "priced": int(priced or 0),
                        "runs": {}, "latency_buckets": [0] * rollups.LATENCY_BUCKETS,
                    }
                for provider, model, bucket, count in conn.execute(latencies):
                    if (provider, model) in facts:
                        facts[(provider, model)]["latency_buckets"][int(bucket)] += int(count)
                for provider, model, status, count in conn.execute(runs):
                    if (provider, model) in facts and count:
                        facts[(provider, model)]["runs"][status or None] = int(count)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc
        return facts

    def graph_runs(self, since: datetime, target: str | None, limit: int, scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        """Run records created at or after ``since`` (oldest first), at most ``limit``."""
        r = tables.runs
        query = sa.select(r.c.run_id, r.c.state, r.c.namespace).where(r.c.created_at >= since.astimezone(UTC),
                                                                      *scope.where(r.c.namespace, r.c.target))
        if target is not None:
            query = query.where(r.c.target == target)
        rows = self._read(query.order_by(r.c.created_at, r.c.run_id).limit(limit))
        return [projection.record(run_id, json.loads(state), namespace) for run_id, state, namespace in rows]

    def sweep(self, before: datetime, chunk: int = 5000) -> int:
        """Delete events whose time is before ``before`` and that the projection has covered, in chunks; how many.

        Never touches the projections (run records, ``agg_*``, rollups), so no total drops; never deletes an
        event the projector has not folded yet. Records the highest seq deleted (``swept_through``): a rebuild
        from the log can no longer give back what those events made. Each chunk is its own short transaction.
        """
        e, s = tables.events, tables.projector_state
        cutoff = before.astimezone(UTC)
        deleted = 0
        try:
            while True:
                with self.engine.begin() as conn:
                    position = conn.execute(sa.select(s.c.position).where(s.c.id == 1)).scalar_one()
                    seqs = [seq for (seq,) in conn.execute(sa.select(e.c.seq).where(e.c.time < cutoff, e.c.seq <= position).limit(chunk))]
                    if not seqs:
                        break
                    freed = conn.execute(sa.select(e.c.namespace, sa.func.count(), sa.func.sum(sa.literal_column(self.sql.body_bytes)))
                                         .where(e.c.seq.in_(seqs)).group_by(e.c.namespace)).all()
                    conn.execute(sa.delete(e).where(e.c.seq.in_(seqs)))
                    u = tables.namespace_usage
                    for namespace, count, size in freed:
                        conn.execute(sa.update(u).where(u.c.namespace == namespace)
                                     .values(events=u.c.events - count, bytes=u.c.bytes - int(size or 0)))
                    conn.execute(sa.update(s).where(s.c.id == 1, s.c.swept_through < max(seqs)).values(swept_through=max(seqs)))
                    deleted += len(seqs)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"sweep failed: {type(exc).__name__}") from exc
        return deleted
