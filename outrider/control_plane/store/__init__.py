"""The durable store: the event log, appended by one group-committing writer per process, and the
projections a projector derives from it (``store.projector``).

The promise: a 2xx from ``POST /v1/events`` (and OTLP ingest) means the events are durably appended to the
log, deduplicated on (source, id). Run records, aggregates and rollups are projections that may lag the log
by a visible amount (``projection_status``; ``consistency`` lets a read wait for a position).

Why one writer per process: a commit costs an fsync. The writer runs in a child process (``writer_process``,
the default; the server's side is ``remote_writer``) or in a thread of the server (``store_writer = "thread"``); it is the same code either way, and
the projector runs beside it. Requests hand their (already validated) events to :meth:`Store.submit` and
wait; the writer takes everything queued while the previous commit ran (up to ``group_commit_max_events``;
when clients write concurrently it waits up to ``group_commit_max_wait_seconds`` for as many requests as the
previous group had), stores the group's (source, id) keys with ``INSERT … ON CONFLICT DO NOTHING`` (which
were new: ``RETURNING`` on PostgreSQL, the row count on SQLite, see ``_insert_keys``), appends one log row per
request holding its new events (``store.log_format``) and commits ONCE. Each request then gets its own ``(accepted, duplicates, position)``. If the transaction
fails, the writer retries the group's requests one per transaction, so one request that cannot be stored
does not take the others down; a request whose own transaction fails gets the error (503) and nothing of it
is stored.

Commit order. The projector reads the log ``seq > checkpoint`` (and the log's readers page the index it
writes by ``seq``), so an event must never become visible after one with a higher seq. On PostgreSQL with
several replicas, two appenders could otherwise number and commit out of order. Every append transaction
therefore first takes ``pg_advisory_xact_lock(APPEND_LOCK)`` and keeps it until it commits: seqs are drawn
(from ``event_log_head``, which the transaction advances) only while holding the lock, and the lock is released
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
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import settings, tables
from outrider.control_plane.store import analytics_reads
from outrider.control_plane.store.engine import WriteTurn, make_engine, migrate, utc
from outrider.control_plane.store.errors import (
    AmbiguousRun,
    ProjectionLagging,
    ProjectionsMismatch,
    RebuildRefused,
    StoreUnavailable,
    SubscriberDropped,
    SubscriptionEnded,
)
from outrider.control_plane.store.feed import Subscription
from outrider.control_plane.store.handover import STOP, Appended, Probe, Rejection, Submission, resolve
from outrider.control_plane.store.log_format import Encoded, encode, explode
from outrider.control_plane.store.projector import Projector
from outrider.control_plane.store.remote_writer import RemoteWriter
from outrider.control_plane.store.scope import DEFAULT_NAMESPACE, EVERYTHING, Scope, narrowed, over_targets
from outrider.control_plane.store.sql import Dialect

if TYPE_CHECKING:
    from outrider.control_plane.store.projector_process import ProjectorProcess

__all__ = [  # the store's public names, re-exported from the modules that define them
    "DEFAULT_NAMESPACE", "EVERYTHING", "AmbiguousRun", "Encoded", "ProjectionLagging", "ProjectionsMismatch", "RebuildRefused", "Scope", "Store", "StoreUnavailable",
    "SubscriberDropped", "Subscription", "SubscriptionEnded", "encode", "make_engine", "migrate", "narrowed", "over_targets", "utc",
]

log = logging.getLogger(__name__)


#: The PostgreSQL advisory lock that serializes appends per database (any constant; "ORDR" in ASCII).
APPEND_LOCK = 0x4F52_4452
#: Readiness does not expect a projector sooner than this many lease periods after the store opened (the writer
#: process, which hosts it, is starting; or another replica's projector must first let its lease lapse).
STARTUP_GRACE_LEASES = 2
#: A run's identity in the store: (namespace, run_id).
RunKey = tuple[str, str]


#: Everything the projector derives from the log (a rebuild empties and refills these).
PROJECTION_TABLES = tables.PROJECTIONS


#: With the writer in a process of its own, a loop hands its submissions over once about this many events are
#: pending instead of at the end of its iteration, so the writer commits them while the loop parses the rest.
HAND_OVER_EVENTS = 8


class Store(analytics_reads.AnalyticsReads):
    """The control plane's store; :meth:`open` migrates and starts the writer, :meth:`close` stops it.

    This class is the log's append path (the group-committing writer), the live feed, the projector's status and
    rebuild, and retention; its reads are inherited from ``store.reads`` (log and run records) and
    ``store.analytics_reads`` (summaries and analytics over the rollups)."""

    def __init__(self, config: settings.Settings) -> None:
        self.settings = config
        self.engine = make_engine(config.database_url, config.sqlite_synchronous, **self._engine_options())
        self.dialect = self.engine.dialect.name
        # SimpleQueue (C): a put from the event loop costs ~1 µs, not the ~10 µs of queue.Queue's Python locking.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        #: The writer in a child process (``store_writer = "process"``), when :meth:`open` started one.
        self._remote: RemoteWriter | None = None
        self._subscribers: set[Subscription] = set()
        self._subscribers_lock = threading.Lock()
        self.sql = Dialect(self.dialect)
        #: The appender's turn at the write lock of SQLite's log file (``engine.WriteTurn``).
        self._turn = WriteTurn(self.engine)
        #: Per event loop, the submissions not yet handed to the writer (see :meth:`_hand_over`).
        self._pending: dict[asyncio.AbstractEventLoop, list[Submission]] = {}
        #: The projector beside the writer: a thread of this process (``store_writer = "thread"``), or in the
        #: writer process a child process of its own (``store.projector_process``).
        self.projector: Projector | ProjectorProcess | None = None
        self._opened_at = time.monotonic()
        #: Why the last group commit failed, until a later commit succeeds; readiness reports it.
        self.last_commit_error: str | None = None
        self._migrated = False

    def _engine_options(self) -> dict[str, Any]:
        """SQLite tuning of this store's engine (the writer process's appender overrides it)."""
        return {}

    # --- lifecycle ---------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the database to the newest schema and check its files (``engine.migrate``), once per store: the
        server runs it before it serves, so a database it cannot use stops the start with its reason."""
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Migrate and start the writer. ``loop``: the running event loop of the caller (the server's), in which
        a writer process's socket is then served (:class:`~.remote_writer.RemoteWriter`); :meth:`close` must
        then be called from another thread than that loop's (``asyncio.to_thread``)."""
        self._opened_at = time.monotonic()
        self.migrate()
        if self.settings.store_writer == "process":
            self._remote = RemoteWriter(self)
            self._remote.start(loop)
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
                                   lease_seconds=self.settings.projector_lease_seconds, name=name,
                                   defer_seconds=self.settings.projector_defer_seconds)
        self.projector.start()

    def close(self) -> None:
        if self._remote is not None:
            self._remote.stop()
            self.release_lease(self._remote.projector_name)  # the child may have been killed holding it
            self._remote = None
        if self._writer is not None:
            self._queue.put(STOP)
            self._writer.join(timeout=30)
            self._writer = None
        if self.projector is not None:
            self.projector.stop()
            self.projector = None
        self.engine.dispose()
        self._turn.close()

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
        self._put(Submission(batch, future))
        return future

    def submit_async(self, batch: Sequence[events.CloudEvent]) -> asyncio.Future[Appended]:
        """Like :meth:`submit`, called from the running event loop, which gets a future of its own: the
        writer answers all of a group's requests from one loop with a single call into it.

        For a writer process the events are serialised here, in the loop (``encode``): the one place that
        holds them as objects, so the process only appends (docs/performance.md, ninth session)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Appended] = loop.create_future()
        if not self.writer_alive:
            future.set_exception(StoreUnavailable("the store writer is not running"))
            return future
        handed: Sequence[events.CloudEvent] | Encoded = batch
        if self._remote is not None:
            try:
                handed = encode(batch)
            except Exception as exc:  # noqa: BLE001 — that request fails (503), the others go on
                log.exception("could not serialise the events of a request")
                future.set_exception(StoreUnavailable(f"could not encode the events: {type(exc).__name__}"))
                return future
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        pending.append(Submission(handed, future))
        if self._remote is not None and len(pending) * len(handed) >= HAND_OVER_EVENTS:
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
        self._put(Rejection(reason, count, future))
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
            if first is STOP:
                return
            group = first if isinstance(first, list) else [first]  # a list: one loop's hand-over
            size = sum(len(item.events) for item in group if isinstance(item, Submission))
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
                if item is STOP:
                    stop = True
                    break
                items = item if isinstance(item, list) else [item]
                group.extend(items)
                size += sum(len(each.events) for each in items if isinstance(each, Submission))
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
            with self._turn.held(), self.engine.begin() as conn:
                results, new_events = self._write(conn, group)
        except Exception as exc:  # noqa: BLE001 — every waiting request must hear about any failure
            log.exception("commit of %d queued items failed", len(group))
            self.last_commit_error = f"{type(exc).__name__}: {exc}"[:500]
            if len(group) == 1:
                resolve([(group[0].future, StoreUnavailable(f"commit failed: {type(exc).__name__}"))])
            return False
        self.last_commit_error = None
        self._turn.note_append()
        if self.projector is not None:
            self.projector.wake()
        if new_events:  # subscribers hear of the events no later than their posters
            self._publish(new_events)
        resolve([(item.future, result) for item, result in zip(group, results, strict=True)])
        return True

    def _write(self, conn: sa.Connection, group: list[Any]) -> tuple[list[tuple[int, int, int]], list[dict[str, Any]]]:
        received_at = datetime.now(UTC)
        rejections: collections.Counter[str] = collections.Counter()
        received = self.sql.time(received_at)
        cursor = conn.connection.cursor()  # the transaction's own DBAPI cursor: the hot path skips SQLAlchemy
        if self.dialect == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            # The driver opens a transaction only before a data-changing statement. Opened here, the group is
            # one transaction: the savepoint in _insert_keys would otherwise open a transaction of its own, and
            # its RELEASE commit the keys without the log rows (a failure or kill in between lost those events:
            # sent again, they were taken for duplicates). A write comes first: it takes the log file's write lock,
            # waited for (busy timeout) while another writer holds it. A transaction that read the log head first
            # failed at once when another writer committed before its first write (SQLITE_BUSY_SNAPSHOT, which no
            # busy timeout waits out). Not BEGIN IMMEDIATE: it takes the write lock of every attached file, the
            # projections file's too (``engine.projections_file``), and would wait for the projector's writes.
            cursor.execute("BEGIN")
            cursor.execute("UPDATE event_log_head SET seq = seq WHERE id = 1")
        if self.dialect != "sqlite":
            # Appends are serialized per database, so events commit in seq order (see "Commit order" above).
            cursor.execute(f"SET LOCAL lock_timeout = '{int(self.settings.write_timeout_seconds * 1000)}ms'")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        submissions: list[tuple[int, Encoded]] = []
        for index, item in enumerate(group):
            if isinstance(item, Rejection):
                rejections[item.reason] += item.count
            elif isinstance(item, Probe):
                conn.execute(sa.delete(tables.store_probe))
                conn.execute(sa.insert(tables.store_probe), {"id": 1, "written_at": received_at})
            else:
                submissions.append((index, encode(item.events)))
        keys = [key for _, encoded in submissions for key in encoded.keys]
        distinct = list(dict.fromkeys(keys))
        new = self._insert_keys(cursor, distinct)
        # The rule: every key is new and none repeats, so no event is a duplicate. Otherwise each distinct (source,
        # id) of the group belongs to the first request that carries it; every other occurrence (in the same
        # request or a later one), and every key stored before, is a duplicate.
        owner: dict[tuple[str, str], int] | None = None
        if len(new) != len(keys):
            owner = {}
            for index, encoded in submissions:
                for key in encoded.keys:
                    owner.setdefault(key, index)
        cursor.execute("SELECT seq FROM event_log_head WHERE id = 1")
        head = cursor.fetchone()
        last = int(head[0]) if head else 0
        accepted = [0] * len(group)
        rows: list[tuple[Any, ...]] = []
        for index, encoded in submissions:
            skip = []
            if owner is not None:
                for n, key in enumerate(encoded.keys):
                    if owner[key] == index and key in new:
                        owner[key] = -1  # taken: a later occurrence in this request is a duplicate
                    else:
                        skip.append(n)
            kept = len(encoded.keys) - len(skip)
            accepted[index] = kept
            if kept:
                rows.append((last + 1, last + kept, received, encoded.body, json.dumps(skip) if skip else None))
                last += kept
        if rows:
            self.sql.write_rows(cursor, "INSERT INTO event_log (seq, last_seq, received_at, body, skip)", 5, rows, "")
            if head is None:
                cursor.execute(f"INSERT INTO event_log_head (id, seq) VALUES (1, {int(last)})")
            else:
                cursor.execute(f"UPDATE event_log_head SET seq = {int(last)} WHERE id = 1")
        results = [
            (accepted[index], len(item.events) - accepted[index], last) if isinstance(item, Submission) else (0, 0, last)
            for index, item in enumerate(group)
        ]
        if rejections:
            self.sql.bump(cursor, "agg_rejections", ("reason",), ("count",), list(rejections.items()))
        published = []
        if rows and self._has_listeners():  # parsed again only when someone listens
            stamp = received_at.isoformat()
            published = [{"seq": seq, "received_at": stamp, "event": event}
                         for first, _, _, body, skip in rows for seq, event in explode(first, body, skip)]
        return results, published

    #: Keys per INSERT statement: 2 parameters each stays far below SQLite's and PostgreSQL's limits.
    INSERT_CHUNK = 1000

    def _insert_keys(self, cursor: Any, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Store the keys not stored yet; which of ``keys`` are new. ``INSERT … ON CONFLICT DO NOTHING`` on the DBAPI
        cursor (the ingestion hot path): PostgreSQL inserts multi-row and says which rows were new (``RETURNING``);
        SQLite inserts row by row from one prepared statement and counts them, and only when some already existed
        are they inserted again, from a savepoint, multi-row and returning."""
        if not keys:
            return set()
        sqlite = self.dialect == "sqlite"
        returned: set[tuple[str, str]] = set()

        def insert(returning: bool) -> int:
            if sqlite and not returning:  # one prepared statement stepped in C: ~20 % less per key than VALUES lists
                cursor.executemany("INSERT INTO event_keys (source, event_id) VALUES (?, ?) "
                                   "ON CONFLICT (source, event_id) DO NOTHING", keys)
                return int(cursor.rowcount)  # summed over the rows by sqlite3
            total = 0
            writer = self.sql.raw_cursor(cursor)  # PostgreSQL: $n placeholders, not re-parsed
            tail = "ON CONFLICT (source, event_id) DO NOTHING" + (" RETURNING source, event_id" if returning else "")
            for start in range(0, len(keys), self.INSERT_CHUNK):
                chunk = keys[start : start + self.INSERT_CHUNK]
                sql = self.sql.values("INSERT INTO event_keys (source, event_id)", tail, 2, len(chunk))
                writer.execute(sql, list(itertools.chain.from_iterable(chunk)))
                if returning:
                    returned.update((str(source), str(event_id)) for source, event_id in writer.fetchall())
                else:
                    total += writer.rowcount
            return total

        if not sqlite:
            insert(returning=True)
            return returned
        # SQLite steps through RETURNING rows one at a time, taking the GIL back for each: when every key is new
        # (the rule) the count says so; otherwise the inserts are undone and done again, returning.
        cursor.execute("SAVEPOINT keys")
        if insert(returning=False) == len(keys):
            cursor.execute("RELEASE keys")
            return set(keys)
        cursor.execute("ROLLBACK TO keys")
        insert(returning=True)
        cursor.execute("RELEASE keys")
        return returned

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
        self._put(Probe(future))
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

    #: The projection lag in events is counted up to this many (a count past it costs more than it tells).
    LAG_COUNT_CAP = 1_000_000

    def projection_status(self, now: float | None = None) -> dict[str, Any]:
        """Where the projection stands against the log: ``position`` (checkpoint), ``head`` (last seq in the
        log), ``lag_events`` (log events after the checkpoint, counted up to :data:`LAG_COUNT_CAP`),
        ``lag_seconds`` (how long the oldest unprojected event has been waiting; 0 when none waits),
        ``holder`` and ``heartbeat_age_seconds`` of the lease (None when nobody holds it)."""
        now = time.time() if now is None else now
        s, g, h = tables.projector_state, tables.event_log, tables.event_log_head
        try:
            with self.engine.connect() as conn:
                state = conn.execute(sa.select(s).where(s.c.id == 1)).one()
                head = conn.execute(sa.select(h.c.seq).where(h.c.id == 1)).scalar() or 0
                # Seqs are dense in the log (each row numbers its new events one after the other): the lag in
                # events is the distance to the head, but for gaps left by logs from before rows per request.
                lag_events = min(max(0, int(head) - int(state.position)), self.LAG_COUNT_CAP)
                oldest = conn.execute(sa.select(g.c.received_at).where(g.c.seq > state.position).order_by(g.c.seq).limit(1)).scalar()
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
        s, g = tables.projector_state, tables.event_log
        position = sa.select(s.c.position).where(s.c.id == 1).scalar_subquery()
        rows = self._read(sa.select(g.c.received_at).where(g.c.seq > position).order_by(g.c.seq).limit(1))
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
            projector.stop()  # its thread never ran; this closes its write turn

    def sweep(self, before: datetime, chunk: int = 5000) -> int:
        """Delete events whose time is before ``before`` and that the projection has covered, in chunks; how many.

        Never touches the projections (run records, ``agg_*``, rollups), so no total drops; never deletes an
        event the projector has not folded yet. Records the highest seq deleted (``swept_through``): a rebuild
        from the log can no longer give back what those events made. Each chunk is its own short transaction.
        On SQLite it writes both files, atomic in each but not across them; SQLite commits the main (log) file
        first, so a chunk cut short between them has its log side done (keys and rows gone) and its projections
        side (per-event index, usage, ``swept_through``) not: the next sweep finds the same events and does it."""
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
                    keys = conn.execute(sa.select(e.c.source, e.c.event_id).where(e.c.seq.in_(seqs))).all()
                    conn.execute(sa.delete(e).where(e.c.seq.in_(seqs)))
                    self._forget(conn, seqs, [tuple(key) for key in keys])
                    u = tables.namespace_usage
                    for namespace, count, size in freed:
                        conn.execute(sa.update(u).where(u.c.namespace == namespace)
                                     .values(events=u.c.events - count, bytes=u.c.bytes - int(size or 0)))
                    conn.execute(sa.update(s).where(s.c.id == 1, s.c.swept_through < max(seqs)).values(swept_through=max(seqs)))
                    deleted += len(seqs)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"sweep failed: {type(exc).__name__}") from exc
        return deleted

    @staticmethod
    def _forget(conn: sa.Connection, seqs: list[int], keys: list[tuple[str, str]]) -> None:
        """The log's side of a sweep: the swept events' keys (the same event sent again is new again, as it was
        when the log kept a row per event), and every log row none of whose events is left in ``events``."""
        g, k, e = tables.event_log, tables.event_keys, tables.events
        for source, event_id in keys:
            conn.execute(sa.delete(k).where(k.c.source == source, k.c.event_id == event_id))
        firsts = set()
        for seq in seqs:
            first = conn.execute(sa.select(sa.func.max(g.c.seq)).where(g.c.seq <= seq)).scalar()
            if first is not None:
                firsts.add(first)
        for first in firsts:
            last = conn.execute(sa.select(g.c.last_seq).where(g.c.seq == first)).scalar()
            if last is None:
                continue
            if conn.execute(sa.select(e.c.seq).where(e.c.seq >= first, e.c.seq <= last).limit(1)).first() is None:
                conn.execute(sa.delete(g).where(g.c.seq == first))
