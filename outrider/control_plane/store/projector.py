"""The projector: folds the event log, in ``seq`` order from a stored checkpoint, into everything derived from
it — run records, the ``agg_*`` counters behind ``/metrics``, LLM rollups — off the request path.

Why: a 2xx from ingestion promises only that the events are durably in the log (``store.Store``'s append).
Folding them costs more than appending them, and it is the one step that must see every event of a run in
one place; doing it on the request path made ingestion slow and, with several replicas, wrong (each replica
folded from its own cached view). Here it runs in large batches, once per database.

Exactly one projector works per database: a lease in ``projector_state`` (``holder``, ``heartbeat_at``) that
its holder renews every :data:`HEARTBEAT_SECONDS`; another replica's projector takes it over once it is
``lease_seconds`` old (the holder died or hangs). Correctness does not rest on the lease. Each batch is:

1. read (no lock): the checkpoint ``position`` and ``version``, the next events after ``position``, and the
   stored states of their runs (or the projector's cache of them, valid while nobody else wrote);
2. fold them in Python;
3. one write transaction that first runs ``UPDATE projector_state SET position = new, version = version + 1
   … WHERE version = read version AND holder = me`` and only if that changed the row writes the projection
   rows, then commits. A projector working from stale reads (it lost the lease, a rebuild ran) changes
   nothing and starts over. So the checkpoint moves in the same transaction as the rows it covers: a crash
   (kill -9 mid-batch) rolls both back, and nothing is ever counted twice or skipped.

Commit order: the log's appends are serialized per database (PostgreSQL: a transaction-level advisory lock
held from the insert to the commit; SQLite has one writer), so events become visible in ``seq`` order and
reading ``seq > position`` never passes over an event that commits later. See ``store.Store`` for the proof.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import sqlalchemy as sa

from outrider.common import events
from outrider.control_plane import projection, run_aggregates, tables
from outrider.control_plane.store import rollups, run_rollups
from outrider.control_plane.store.engine import WriteTurn
from outrider.control_plane.store.log_format import explode
from outrider.control_plane.store.sql import Dialect

log = logging.getLogger(__name__)

#: How often the lease holder renews its lease while idle (seconds).
HEARTBEAT_SECONDS = 1.0
#: After a batch smaller than the batch size, how long the projector lets appends gather before the next one
#: (seconds). The first batch after a quiet spell starts at once; under a stream of small commits (single
#: events from many clients) the projector otherwise ran one batch, with its own fsync and its own turn at the
#: write lock, per append: +15 % single-event ingestion at 20 ms (docs/performance.md). Adds at most this much lag.
COALESCE_SECONDS = 0.02
#: How often a projector deferring to the appender looks again (seconds).
DEFER_POLL_SECONDS = 0.01
#: Runs whose fold states the projector keeps in memory (JSON text), least recently used first.
RUN_CACHE = 4096

RunKey = tuple[str, str]
RUN_COLUMNS = tuple(column.name for column in tables.runs.columns)
MODEL_RUNS_KEY = ("hour", "namespace", "target", "provider", "model", "status")
DEFAULT_NAMESPACE = "default"
#: Columns of the per-event index (``tables.events``), in the order of the rows ``Folder.parse`` builds.
EVENT_COLUMNS = ("seq", "source", "event_id", "type", "time", "target", "run_id", "received_at", "namespace", "body")


def _utc(moment: Any) -> datetime:
    """A ``time`` column value as an aware UTC datetime (SQLite hands back its text, PostgreSQL a datetime)."""
    value: datetime = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def holder_name() -> str:
    """Who holds the lease, as operators read it: host, process and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:128]


@dataclasses.dataclass(slots=True)
class LogEvent:
    """What the fold reads of an event: its envelope and ``data``, read from the log (not validated again)."""

    type: str
    source: str
    id: str
    time: datetime
    target: str | None
    runid: str | None
    namespace: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class _Batch:
    """A folded batch on its way to the database: log seqs ``start`` (the checkpoint it folds from, exclusive) to
    ``end``, the checkpoint ``version`` its write expects, and what that write inserts."""

    start: int
    end: int
    version: int
    indexed: list[tuple[Any, ...]]
    usage: dict[str, list[int]]
    write: Callable[[Any], None]
    future: concurrent.futures.Future[None] | None = None


class Fenced(Exception):
    """The checkpoint moved (another projector, a rebuild) since this batch read it: nothing was written."""


class Folder:
    """Folds batches of log events into projection rows, in the batch's transaction (no I/O of its own but the
    cursor it is handed)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        #: run key → (fold state as JSON text, its query columns); valid only while ``version`` is ours.
        self.cache: collections.OrderedDict[RunKey, tuple[str, dict[str, Any]]] = collections.OrderedDict()
        #: Events the fold could not use (did not validate again, or a fold error): logged and counted.
        self.skipped = 0

    def parse(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[int, Any, str]], list[tuple[Any, ...]]]:
        """The events of log rows (seq, last seq, received at, body, skip): (seq, event, iso time) for the fold,
        each as a :class:`LogEvent`, and their rows of the per-event index (``tables.events``).

        The bodies are not validated again: the log holds only what ingestion validated, serialised by the event
        model itself, so the projector would only repeat that work (it was a quarter of the projector's CPU). An
        event that is not a JSON object with the envelope's fields is skipped (logged, counted); a value the fold
        cannot use fails that event's fold (skipped, counted) or its batch's write (narrowed, then skipped)."""
        parsed: list[tuple[int, Any, str]] = []
        indexed: list[tuple[Any, ...]] = []
        iso, fromiso, dumps = projection.iso, datetime.fromisoformat, pydantic_core.to_json
        sqlite = self.dialect.sqlite
        for first, last, received_at, body, skip in rows:
            try:
                exploded = explode(int(first), body, skip, int(last))
            except (ValueError, TypeError) as exc:
                self.skipped += int(last) - int(first) + 1
                log.error("log row seq %d..%d cannot be read (%s); it is not projected", first, last, exc)
                continue
            for seq, event in exploded:
                try:
                    moment = event["time"]
                    # The event model writes UTC as "…Z": the fixed-width text by slicing (formatting a datetime
                    # was a tenth of the projector's CPU); other offsets are converted.
                    if len(moment) == 27 and moment[26] == "Z":
                        text = moment[:26] + "+00:00"
                    elif len(moment) == 20 and moment[19] == "Z":
                        text = moment[:19] + ".000000+00:00"
                    else:
                        text = iso(_utc(fromiso(moment)))
                    when = fromiso(text)
                    kind, source, event_id = event["type"], event["source"], event["id"]
                    namespace = event.get("namespace") or DEFAULT_NAMESPACE
                    target, run_id, data = event.get("target"), event.get("runid"), event.get("data")
                    stored = dumps(event).decode()  # as the event model serialised it: the same JSON text
                except (KeyError, ValueError, TypeError, AttributeError) as exc:
                    self.skipped += 1
                    log.error("event seq %d in the log cannot be read (%s); it is not projected", seq, exc)
                    continue
                parsed.append((seq, LogEvent(kind, source, event_id, when, target, run_id, namespace,
                                             data if isinstance(data, dict) else {}), text))
                indexed.append((seq, source, event_id, kind, f"{text[:10]} {text[11:26]}" if sqlite else when,
                                target, run_id, received_at, namespace, stored))
        return parsed, indexed

    def load_states(self, read: Callable[[str, list[Any]], list[tuple[Any, ...]]], keys: list[RunKey]) -> dict[RunKey, tuple[projection.RunState, dict[str, Any]]]:
        """Stored (state, columns) of the runs among ``keys`` that the cache does not hold."""
        missing: dict[str, list[str]] = {}
        for namespace, run_id in keys:
            if (namespace, run_id) not in self.cache:
                missing.setdefault(namespace, []).append(run_id)
        loaded: dict[RunKey, tuple[projection.RunState, dict[str, Any]]] = {}
        mark = self.dialect.mark
        for namespace, run_ids in missing.items():
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                for run_id, text in read(f"SELECT run_id, state FROM runs WHERE namespace = {mark} AND run_id IN ({', '.join([mark] * len(chunk))})",
                                         [namespace, *chunk]):
                    state = json.loads(text)
                    loaded[(namespace, run_id)] = (state, projection.columns(run_id, state, namespace))
        return loaded

    def load_models(self, read: Callable[[str, list[Any]], list[tuple[Any, ...]]], keys: list[RunKey]) -> dict[RunKey, rollups.Models]:
        """The stored ``run_models`` of the runs among ``keys``: a status change moves each of them in
        ``rollup_model_runs``. Read for every run of the batch, uncached (few rows, by primary key)."""
        by_namespace: dict[str, list[str]] = {}
        for namespace, run_id in keys:
            by_namespace.setdefault(namespace, []).append(run_id)
        found: dict[RunKey, rollups.Models] = {}
        mark = self.dialect.mark
        for namespace, run_ids in by_namespace.items():
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                for run_id, provider, model, target, hour in read(
                        f"SELECT run_id, provider, model, target, first_hour FROM run_models WHERE namespace = {mark} "
                        f"AND run_id IN ({', '.join([mark] * len(chunk))})", [namespace, *chunk]):
                    found.setdefault((namespace, run_id), {})[(provider, model)] = (target, int(hour))
        return found

    def fold(self, batch: list[tuple[int, events.CloudEvent, str]],
             loaded: dict[RunKey, tuple[projection.RunState, dict[str, Any]]],
             models: dict[RunKey, rollups.Models] | None = None) -> Callable[[Any], None]:
        """Fold ``batch`` (seq order) onto the cached or ``loaded`` states, given the stored ``models`` of its runs
        (:meth:`load_models`); the function that writes the result with a cursor of the batch's transaction. The
        cache is updated only once that write has run."""
        models = models or {}
        d = self.dialect
        type_counts: collections.Counter[str] = collections.Counter()
        llm: dict[tuple[str, str, str], list[int]] = {}
        prs: collections.Counter[tuple[str, str]] = collections.Counter()
        by_run: dict[RunKey, list[tuple[int, events.CloudEvent, str]]] = {}
        hours: dict[tuple[int, str, str, str, str], list[int]] = {}
        latency: collections.Counter[tuple[int, str, str, str, str, int]] = collections.Counter()
        spend: collections.Counter[tuple[int, str, str]] = collections.Counter()
        run_models: dict[RunKey, rollups.Models] = {}
        # Plain strings, looked up once: an enum member's lookup costs ~0.1 µs (see projection.merge_into).
        run_types, llm_usage, pr_created = projection.RUN_TYPES, events.EventType.RUN_LLM_USAGE.value, events.EventType.PR_CREATED.value
        for item in batch:
            event = item[1]
            kind = event.type
            type_counts[kind] += 1
            run_id = event.runid
            namespace = event.namespace or DEFAULT_NAMESPACE
            if run_id and kind in run_types:
                by_run.setdefault((namespace, run_id), []).append(item)
            if kind == llm_usage:
                data = event.data
                try:
                    provider, model = str(data["provider"]), str(data["model"])
                    tokens_in, tokens_out = int(data["input_tokens"]), int(data["output_tokens"])
                    cost = data.get("cost_usd")
                    nano = round(float(cost) * projection.NANO) if cost is not None else None
                    latency_s = data.get("latency_s")
                    latency_s = float(latency_s) if latency_s is not None else None
                except (KeyError, TypeError, ValueError):
                    self.skipped += 1
                    log.error("run.llm_usage seq %d has no usable figures; it is left out of the rollups", item[0])
                    continue
                target = event.target or ""
                epoch = event.time.timestamp()
                hour = rollups.hour_of(epoch)
                cell = hours.setdefault((hour, namespace, target, provider, model), [0, 0, 0, 0, 0, 0])
                cell[0] += 1
                cell[1] += 1 if data.get("error") else 0
                cell[2] += tokens_in
                cell[3] += tokens_out
                if nano is not None:
                    cell[4] += nano
                    cell[5] += 1
                    spend[(rollups.minute_of(epoch), namespace, target)] += nano
                if latency_s is not None:
                    latency[(hour, namespace, target, provider, model, rollups.latency_bucket(latency_s))] += 1
                if run_id:
                    used = run_models.setdefault((namespace, run_id), {})
                    known = used.get((provider, model))
                    if known is None or hour < known[1]:
                        used[(provider, model)] = (event.target, hour)
                agg = llm.setdefault((namespace, target, model), [0, 0, 0])
                agg[0] += tokens_in
                agg[1] += tokens_out
                agg[2] += nano or 0

        cache = self.cache
        changes: list[tuple[RunKey, dict[str, Any] | None, dict[str, Any], str]] = []
        run_rows: list[tuple[Any, ...]] = []
        for run_key, run_events in by_run.items():
            namespace, run_id = run_key
            cached = cache.get(run_key)
            before: dict[str, Any] | None
            if cached is not None:
                state, before = pydantic_core.from_json(cached[0]), cached[1]
            else:
                state, before = loaded.get(run_key) or (projection.empty_state(), None)
            for seq, event, when in run_events:
                try:
                    if event.type == pr_created:
                        number = str(int(event.data["number"]))
                        if not state["prs"].get(number, [None, None, False, False])[2]:
                            prs[(namespace, event.target or "")] += 1  # a PR counts once per run
                    projection.merge_into(state, event, when)
                except Exception:  # noqa: BLE001 — one bad event must not stop the projection of the log
                    self.skipped += 1
                    log.exception("event seq %d could not be folded into run %s/%s", seq, namespace, run_id)
            after = projection.columns(run_id, state, namespace)
            # pydantic-core's serialiser: compact JSON as json.dumps(separators=(",", ":")) writes it, in a third of
            # the time (non-ASCII as UTF-8 rather than escaped: the same values read back).
            text = pydantic_core.to_json(state).decode()
            changes.append((run_key, before, after, text))
            row = dict(after, updated_seq=run_events[-1][0], state=text)
            for name in ("created_at", "started_at", "completed_at", "last_event_at"):
                if row[name] is not None:
                    row[name] = d.time(row[name])
            run_rows.append(tuple(row[name] for name in RUN_COLUMNS))

        run_rows_delta = run_rollups.deltas((before, after) for _, before, after, _ in changes)
        model_runs = rollups.model_run_deltas(((key, before["status"] if before else None, after["status"]) for key, before, after, _ in changes),
                                              models, run_models)
        #: The ``run_models`` rows this write adds, by run (a batch folded before it commits lays them over its reads).
        added = {key: {pair: first for pair, first in used.items() if pair not in models.get(key, {})} for key, used in run_models.items()}
        new_models = [(namespace, run_id, provider, model, target, hour) for (namespace, run_id), pairs in added.items()
                      for (provider, model), (target, hour) in pairs.items()]

        def write(cursor: Any) -> None:
            if run_rows:
                d.write_rows(
                    cursor, f"INSERT INTO runs ({', '.join(RUN_COLUMNS)})", len(RUN_COLUMNS), run_rows,
                    "ON CONFLICT (namespace, run_id) DO UPDATE SET "
                    + ", ".join(f"{name} = excluded.{name}" for name in RUN_COLUMNS if name not in ("namespace", "run_id")),
                )
            d.bump(cursor, "agg_event_types", ("type",), ("count",), list(type_counts.items()))
            d.bump(cursor, "agg_llm", ("namespace", "target", "model"), ("input_tokens", "output_tokens", "cost_nano_usd"),
                   [(n, t, m, *v) for (n, t, m), v in llm.items()])
            d.bump(cursor, "agg_prs", ("namespace", "target"), ("created",), [(n, t, c) for (n, t), c in prs.items()])
            run_aggregates.apply(cursor, [(before, after) for _, before, after, _ in changes], d.bump)
            d.bump(cursor, "rollup_runs", run_rollups.KEY, run_rollups.NUMBERS, run_rows_delta)
            d.bump(cursor, "rollup_runs_all", run_rollups.ALL_KEY, run_rollups.NUMBERS, run_rollups.over_targets(run_rows_delta))
            d.bump(cursor, "rollup_runs_day", run_rollups.DAY_KEY, run_rollups.NUMBERS, run_rollups.by_day(run_rows_delta))
            d.bump(cursor, "rollup_llm", ("hour", "namespace", "target", "provider", "model"),
                   ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced"),
                   [(*key, *values) for key, values in hours.items()])
            d.bump(cursor, "rollup_llm_latency", ("hour", "namespace", "target", "provider", "model", "bucket"), ("count",),
                   [(*key, count) for key, count in latency.items()])
            d.bump(cursor, "rollup_llm_all", ("hour", "namespace", "provider", "model"),
                   ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced"),
                   [(*key, *values) for key, values in rollups.over_targets(hours).items()])
            d.bump(cursor, "rollup_llm_latency_all", ("hour", "namespace", "provider", "model", "bucket"), ("count",),
                   [(*key, count) for key, count in rollups.over_targets(latency).items()])
            d.bump(cursor, "rollup_spend", ("minute", "namespace", "target"), ("cost_nano_usd",),
                   [(*key, nano) for key, nano in spend.items()])
            d.write_rows(cursor, "INSERT INTO run_models (namespace, run_id, provider, model, target, first_hour)", 6,
                         new_models, "ON CONFLICT (namespace, run_id, provider, model) DO NOTHING")
            d.bump(cursor, "rollup_model_runs", MODEL_RUNS_KEY, ("count",), [(*key, count) for key, count in model_runs.items()])
            d.bump(cursor, "rollup_model_runs_all", tuple(n for n in MODEL_RUNS_KEY if n != "target"), ("count",),
                   [(*key, count) for key, count in rollups.over_targets(model_runs).items() if count])

        def remember() -> None:
            for run_key, _, after, text in changes:
                cache.pop(run_key, None)
                cache[run_key] = (text, after)  # most recently used last
            while len(cache) > max(RUN_CACHE, len(changes)):  # never this batch's own runs: see Projector._prepare
                cache.popitem(last=False)

        write.remember = remember  # type: ignore[attr-defined]
        write.added_models = added  # type: ignore[attr-defined]
        return write


class Projector:
    """The projection loop of one process: claims the lease, projects batches, renews the lease; see the module
    docstring. ``wake()`` (after an append) makes it look at once instead of at its next poll."""

    def __init__(self, engine: sa.Engine, *, batch_events: int = 5000, poll_seconds: float = 0.5,
                 lease_seconds: float = 5.0, name: str | None = None, defer_seconds: float = 0.0,
                 pipeline: bool = True) -> None:
        self.engine = engine
        self.dialect = Dialect(engine.dialect.name)
        self.folder = Folder(self.dialect)
        #: The projector's turn at the write lock of SQLite's projections file (``engine.WriteTurn``); it also
        #: says when the appender last committed.
        self._turn = WriteTurn(engine, projections=True)
        self.batch_events = batch_events
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.defer_seconds = defer_seconds
        self._budget_spent = False  # this burst has used its defer_seconds: no deferring until caught up
        #: While deferring, when to stop (epoch seconds): the checks between polls need no query then.
        self._defer_until: float | None = None
        self.name = name or holder_name()
        self.leader = False
        self._version: int | None = None  # the version our last write left; the cache is valid while it holds
        self._limit: int | None = None  # a smaller batch while isolating an event that cannot be projected
        self._last_heartbeat = 0.0
        #: Fold a batch while the one before is written (:meth:`_step_pipelined`); False: one after the other.
        self.pipeline = pipeline
        self._inflight: _Batch | None = None  # the batch being written
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outrider-projector", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        self._abandon()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if self.leader:
            with contextlib.suppress(Exception):
                self._release()
        self._turn.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                now = time.time()
                if not self.leader or now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                    self.leader = self._claim(now)
                if self.leader and self._deferring():
                    self._stop.wait(DEFER_POLL_SECONDS)
                    continue
                projected = self.step() if self.leader else 0
                self.last_error = None
                backoff = 0.0
            except Exception as exc:  # noqa: BLE001 — a database outage: retry with backoff, never die
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("projection failed (%s); retrying", self.last_error, exc_info=True)
                self._abandon()
                backoff = min(max(backoff * 2, 0.1), 5.0)
                self._stop.wait(backoff)
                continue
            if projected:
                if projected < self.batch_events:  # a partial batch: let a few more commits gather first
                    self._stop.wait(COALESCE_SECONDS)
                continue  # more may be waiting: no pause while behind
            self._wake.wait(self.poll_seconds if self.leader else self.lease_seconds / 4)
            self._wake.clear()

    def _deferring(self) -> bool:
        """Whether to leave SQLite's write lock to the appender for now: appends keep coming (it committed within
        ``WriteTurn.ACTIVE_SECONDS``), the projection is more than a batch behind (a burst: at a steady rate it
        keeps up), and the oldest event waiting for it has waited less than ``defer_seconds``. Each projector
        transaction would hold the lock for as long as the appender needs to commit a dozen requests; during
        a burst ingestion then runs at what the appender alone allows. Once a burst has used up the budget, the
        projector works without deferring until it is less than a batch behind again: deferring again at every
        batch would keep it idle whenever it came within ``defer_seconds``, and a long burst would end with
        more to catch up. Never on PostgreSQL (no shared lock).

        Only for a burst that began within ``defer_seconds``: an appender committing without pause for longer is a
        steady load, and a projector that fell a batch behind in it (a slow batch, a busy machine) must catch up,
        not wait until its oldest event is ``defer_seconds`` old: the likely source of a lag p99 of 1.99 s (max 2.07, the
        budget of 2 s) in one run at half the sustained rate, against a target of 1 s (docs/performance.md)."""
        busy_for = self._turn.appender_busy_for() if self.defer_seconds else None
        if busy_for is None:
            self._defer_until = None
            return False
        if busy_for >= self.defer_seconds and self._defer_until is None:  # not a burst: a steady load
            return False
        if self._defer_until is not None:  # deferring: the log only grew since, so only the clock can end it
            if time.time() < self._defer_until:
                return True
            self._defer_until = None
            self._budget_spent = True
            return False
        s, g, h = tables.projector_state, tables.event_log, tables.event_log_head
        with self.engine.connect() as conn:
            position = conn.execute(sa.select(s.c.position).where(s.c.id == 1)).scalar() or 0
            head = conn.execute(sa.select(h.c.seq).where(h.c.id == 1)).scalar() or 0
            if head - position < self.batch_events:
                self._budget_spent = False
                return False
            if self._budget_spent:
                return False
            oldest = conn.execute(sa.select(g.c.received_at).where(g.c.seq > position).order_by(g.c.seq).limit(1)).scalar()
        if oldest is None:
            return False
        deadline = _utc(oldest).timestamp() + self.defer_seconds
        if time.time() >= deadline:
            self._budget_spent = True
            return False
        self._defer_until = deadline
        return True

    # --- the lease ---------------------------------------------------------------------------------

    def _claim(self, now: float) -> bool:
        """Renew our lease, or take it when free or lapsed; whether we hold it."""
        s = tables.projector_state
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(s).where(s.c.id == 1, sa.or_(s.c.holder == self.name, s.c.holder.is_(None), s.c.heartbeat_at.is_(None),
                                                       s.c.heartbeat_at < now - self.lease_seconds))
                .values(holder=self.name, heartbeat_at=now)
            ).rowcount
        if taken and not self.leader:
            log.info("projector %s holds the lease", self.name)
            self._abandon()
        self._last_heartbeat = now
        return bool(taken)

    def _abandon(self) -> None:
        """Forget the run cache and what our last write left, after waiting out any write in flight (its runs are
        in the cache, and the database holds them only once it commits)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            self._wait(inflight)
        self.folder.cache.clear()
        self._version = None

    def _release(self) -> None:
        s = tables.projector_state
        with self.engine.begin() as conn:
            conn.execute(sa.update(s).where(s.c.id == 1, s.c.holder == self.name).values(holder=None, heartbeat_at=None))
        self.leader = False

    # --- one batch ---------------------------------------------------------------------------------

    def _poison_types(self) -> tuple[type[BaseException], ...]:
        dbapi = self.engine.dialect.dbapi
        return (OverflowError, ValueError, UnicodeError, dbapi.DataError, dbapi.IntegrityError)  # type: ignore[union-attr]

    def step(self) -> int:
        """One batch, isolating an event the projection cannot write: a batch that fails on its data (not on
        the database) is retried in halves down to one event, which is then skipped (logged, counted in
        ``folder.skipped``), so one poison event never stops the projection of the log. Log seqs projected, or
        handed to the write thread (-1: retrying smaller, or nothing new but a write just finished; 0: caught up)."""
        limit = self._limit or self.batch_events
        try:
            done = self._step_pipelined(limit) if self.pipeline and limit == self.batch_events else self.project_batch(limit)
        except self._poison_types() as exc:
            if limit > 1:
                self._limit = max(1, limit // 2)
                return -1
            self._skip_next(exc)
            return 1
        if done and limit < self.batch_events:
            self._limit = min(self.batch_events, limit * 2)
        return done

    def _skip_next(self, exc: BaseException) -> None:
        s = tables.projector_state
        with self.engine.begin() as conn:
            position, version = conn.execute(sa.select(s.c.position, s.c.version).where(s.c.id == 1)).one()
            g = tables.event_log
            row = conn.execute(sa.select(g.c.seq, g.c.last_seq).where(g.c.seq > position).order_by(g.c.seq).limit(1)).first()
            if row is None:
                return
            moved = conn.execute(sa.update(s).where(s.c.id == 1, s.c.version == version, s.c.holder == self.name)
                                 .values(position=row.last_seq, version=s.c.version + 1, projected_at=time.time())).rowcount
        if moved:
            self.folder.skipped += row.last_seq - max(position, row.seq - 1)
            self._version = version + 1
            log.error("log row seq %d..%d cannot be projected (%s: %s); skipped", row.seq, row.last_seq, type(exc).__name__, exc)

    def project_batch(self, limit: int | None = None) -> int:
        """Project the next batch of the log (at most ``limit`` events) and wait for its write; how many log seqs it
        covered (0: nothing new, or fenced). Nothing may be in flight (:meth:`step` sees to that)."""
        self._drain()
        position, version = self._checkpoint()
        prepared = self._prepare(position, version, int(limit or self.batch_events), None)
        if prepared is None:
            return 0
        try:
            self._write(prepared)
        except Exception as exc:  # noqa: BLE001 — _finish raises it again, after forgetting the cache
            return self._finish(prepared, exc)
        return self._finish(prepared)

    def _checkpoint(self) -> tuple[int, int]:
        """The stored checkpoint and its version; forgets the run cache when someone else wrote since ours."""
        s = tables.projector_state
        with self.engine.connect() as conn:
            position, version = conn.execute(sa.select(s.c.position, s.c.version).where(s.c.id == 1)).one()
        if version != self._version:  # someone else wrote (or we never did): the cache cannot be trusted
            self.folder.cache.clear()
        return int(position), int(version)

    def _prepare(self, position: int, version: int, limit: int, inflight: _Batch | None) -> _Batch | None:
        """Read the log rows after ``position`` (at most ``limit`` seqs) and fold them; None when there are none.

        ``inflight`` is the batch whose write may still be running: this one then starts where it ends. Its runs
        are in the fold cache (``remember`` is called here, before the write, and never evicts a batch's own
        runs), so what is read from the database is only runs it does not write; the ``run_models`` rows it adds
        are laid over what is read. Should its write fail, :meth:`_finish` drops this batch and the cache."""
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            mark = self.dialect.mark
            # Whole log rows: those starting within ``limit`` seqs of the checkpoint (seqs are dense but for
            # gaps PostgreSQL's sequences left in logs from before rows per request), else the next one. The
            # checkpoint is always a row's last seq (or 0), so "after it" is a range of the primary key.
            columns = "SELECT seq, last_seq, received_at, body, skip FROM event_log"
            cursor.execute(f"{columns} WHERE seq > {mark} AND seq <= {mark} ORDER BY seq", (position, position + limit))
            rows = list(cursor.fetchall())
            if not rows:
                cursor.execute(f"{columns} WHERE seq > {mark} ORDER BY seq LIMIT 1", (position,))
                rows = list(cursor.fetchall())
            if not rows:
                return None
            batch, indexed = self.folder.parse(rows)
            usage: dict[str, list[int]] = {}
            for row in indexed:  # every stored event counts, including any the fold skips
                counts = usage.setdefault(row[8], [0, 0])
                counts[0] += 1
                body = row[9]
                counts[1] += len(body) if body.isascii() else len(body.encode())  # bytes; isascii() is a flag check
            keys = list(dict.fromkeys((e.namespace or DEFAULT_NAMESPACE, e.runid) for _, e, _ in batch
                                      if e.runid and e.type in projection.RUN_TYPES))

            def read(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
                cursor.execute(sql, params)
                return list(cursor.fetchall())

            loaded = self.folder.load_states(read, keys)
            models = self.folder.load_models(read, keys)
            conn.rollback()  # end the read transaction before writing
        if inflight is not None:
            added_before: dict[RunKey, rollups.Models] = inflight.write.added_models  # type: ignore[attr-defined]
            for key in keys:
                for pair, first in added_before.get(key, {}).items():
                    models.setdefault(key, {}).setdefault(pair, first)
        write = self.folder.fold(batch, loaded, models)
        write.remember()  # type: ignore[attr-defined]
        return _Batch(position, int(rows[-1][1]), version, indexed, usage, write)

    def _write(self, prepared: _Batch) -> None:
        """A batch's write transaction: the checkpoint moves (fenced on its version and our lease) with the
        per-event index, the fold's rows and the namespaces' usage. Raises :class:`Fenced` when it did not."""
        now = time.time()
        with self._turn.held(), self.engine.begin() as conn:
            cursor = conn.connection.cursor()
            mark = self.dialect.mark
            cursor.execute(  # first statement: on SQLite it takes the write lock before anything is read
                f"UPDATE projector_state SET position = {mark}, version = version + 1, heartbeat_at = {mark}, "
                f"projected_at = {mark} WHERE id = 1 AND version = {mark} AND holder = {mark}",
                (prepared.end, now, now, prepared.version, self.name),
            )
            if cursor.rowcount != 1:
                raise Fenced
            self.dialect.insert_rows(cursor, "events", EVENT_COLUMNS, prepared.indexed)
            prepared.write(cursor)
            self.dialect.bump(cursor, "namespace_usage", ("namespace",), ("events", "bytes"),
                              [(namespace, *counts) for namespace, counts in prepared.usage.items()])
        self._last_heartbeat = now

    def _finish(self, prepared: _Batch, outcome: BaseException | None = None) -> int:
        """Take in a written batch's outcome; its log seqs, or 0 when fenced. Any other failure forgets the run
        cache (it holds this batch's runs, and those of any batch prepared after it) and is raised."""
        if outcome is None:
            self._version = prepared.version + 1
            return max(1, prepared.end - prepared.start)
        self.folder.cache.clear()
        self._version = None
        if isinstance(outcome, Fenced):
            log.info("projector %s: the checkpoint moved under it (lease lost or rebuild); starting over", self.name)
            self.leader = False
            return 0
        raise outcome

    # --- the write pipeline --------------------------------------------------------------------------

    def _step_pipelined(self, limit: int) -> int:
        """Fold the next batch while the previous one is being written (by the ``outrider-projector-write``
        thread), then hand it over; its log seqs (-1: nothing new, but a write just finished; 0: caught up).

        Why: folding is Python and writing is mostly the database's own work (SQLite's B-trees, PostgreSQL's
        server), during which the interpreter lock is free; one after the other, a drain kept one core busy
        and the other idle (docs/performance.md). The batch is written with the version the one before leaves,
        so if that one fails this one is fenced, and it is dropped before it is handed over in any case."""
        inflight = self._inflight
        try:
            if inflight is None:
                position, version = self._checkpoint()
            else:
                position, version = inflight.end, inflight.version + 1
            prepared = self._prepare(position, version, limit, inflight)
        except BaseException:
            self._abandon()
            raise
        self._inflight = None
        if inflight is not None and not self._finish(inflight, self._wait(inflight)):
            return 0  # fenced: ``prepared`` was folded on top of it and is dropped
        if prepared is None:
            return -1 if inflight is not None else 0
        if self._writer is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="outrider-projector-write")
        prepared.future = self._writer.submit(self._write, prepared)
        self._inflight = prepared
        return max(1, prepared.end - prepared.start)

    @staticmethod
    def _wait(prepared: _Batch) -> BaseException | None:
        """Wait for a handed-over batch's write; its exception, if it raised one."""
        assert prepared.future is not None
        return prepared.future.exception()

    def _drain(self) -> None:
        """Wait for the batch in flight, if any, and take in its outcome (raising a failure)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            self._finish(inflight, self._wait(inflight))

    def run_until_caught_up(self, timeout: float = 600.0) -> int:
        """Project until the log is exhausted (tests, ``outrider store rebuild``); how many rows it projected."""
        deadline = time.monotonic() + timeout
        total = 0
        self.leader = self._claim(time.time())
        if not self.leader:
            raise RuntimeError("another projector holds the lease")
        while time.monotonic() < deadline:
            done = self.step()
            if not done:
                return total
            total += max(done, 0)
        raise TimeoutError("the projection did not catch up")
