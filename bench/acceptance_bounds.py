"""Probes of what bounds batched acceptance, for the decision issue 14 leaves open (not part of ``make bench``).

Two measurements, each an A/B in one sitting:

- ``log_layout``: SQLite CPU per event of appending the benchmark's events, as the appender groups them
  (32 requests of 100 per transaction, ``synchronous=FULL``, WAL), into the log as it is (``tables.events``:
  one row per event, the (source, id) constraint and five secondary indexes, the appender's own INSERT) and
  into a probe layout of one row per request (the request's events as one body) plus a (source, id) table
  for deduplication. SQLite's own work only: the appender's Python around it is the same either way.
- ``projector_paused``: the shipped control plane on SQLite under the batched load of ``make bench`` (100 per
  request, 32 connections, 10 s), alternately with its projector process running and stopped (SIGSTOP for the
  load, SIGCONT after): acceptance when projection waits until a burst is over, and how long it then takes
  to catch up.

    python -m bench.acceptance_bounds [pairs]
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench import payloads, projection_bench, servers
from outrider.control_plane.store.engine import projections_file

#: The columns the appender wrote when the log was a row per event (before migration 0011), in its order.
PER_EVENT_COLUMNS = ("source", "event_id", "type", "time", "target", "run_id", "received_at", "body", "namespace")
REQUESTS_PER_COMMIT = 32
EVENTS_PER_REQUEST = 100
TOKEN = "bench-acceptance-bounds-token"


def _fresh(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-32000", "wal_autocheckpoint=16000"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _rows(count: int) -> list[tuple[Any, ...]]:
    """Row tuples in :data:`PER_EVENT_COLUMNS` order for ``count`` benchmark events."""
    rows = []
    for body in itertools.islice(payloads.event_stream("bounds"), count):
        event = json.loads(body)
        when = event["time"]
        rows.append((event["source"], event["id"], event["type"], f"{when[:10]} {when[11:26]}", event.get("target"),
                     event.get("runid"), "2026-12-05 00:00:00.000000", body.decode(), "default"))
    return rows


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _append_per_event_log(path: Path, rows: list[tuple[Any, ...]]) -> float:
    import sqlalchemy as sa
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from outrider.control_plane import tables

    conn = _fresh(path)
    # The per-event index as the appender wrote it before migration 0011: with the (source, id) constraint.
    table = tables.events.to_metadata(sa.MetaData())
    table.append_constraint(sa.UniqueConstraint("source", "event_id"))
    statements: list[sa.schema.ExecutableDDLElement] = [sa.schema.CreateTable(table)]
    statements += [sa.schema.CreateIndex(index) for index in table.indexes]
    for statement in statements:
        conn.execute(str(statement.compile(dialect=sqlite_dialect.dialect())))
    columns = ", ".join(PER_EVENT_COLUMNS)
    sql = (f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(PER_EVENT_COLUMNS))}) "
           "ON CONFLICT (source, event_id) DO NOTHING")
    step = REQUESTS_PER_COMMIT * EVENTS_PER_REQUEST
    started = _cpu()
    for first in range(0, len(rows), step):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[first:first + step])
        conn.execute("COMMIT")
    spent = _cpu() - started
    conn.close()
    return spent / len(rows) * 1e6


def _append_request_log(path: Path, rows: list[tuple[Any, ...]]) -> float:
    conn = _fresh(path)
    conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, events INTEGER NOT NULL, "
                 "received_at TEXT NOT NULL, body TEXT NOT NULL)")
    conn.execute("CREATE TABLE seen (source TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (source, event_id)) WITHOUT ROWID")
    step = REQUESTS_PER_COMMIT * EVENTS_PER_REQUEST
    started = _cpu()
    for first in range(0, len(rows), step):
        conn.execute("BEGIN IMMEDIATE")
        for request in range(first, min(len(rows), first + step), EVENTS_PER_REQUEST):
            events = rows[request:request + EVENTS_PER_REQUEST]
            conn.executemany("INSERT INTO seen VALUES (?, ?) ON CONFLICT DO NOTHING", [row[:2] for row in events])
            conn.execute("INSERT INTO log (events, received_at, body) VALUES (?, ?, ?)",
                         (len(events), events[0][6], "[" + ",".join(row[7] for row in events) + "]"))
        conn.execute("COMMIT")
    spent = _cpu() - started
    conn.close()
    return spent / len(rows) * 1e6


def log_layout(workdir: Path, events: int = 96_000, repeats: int = 3) -> dict[str, Any]:
    rows = _rows(events)
    per_event = [_append_per_event_log(workdir / "per-event.db", rows) for _ in range(repeats)]
    per_request = [_append_request_log(workdir / "per-request.db", rows) for _ in range(repeats)]
    return {"events": events, "per_event_log_us": per_event, "per_request_log_us": per_request,
            "ratio": statistics.median(per_request) / statistics.median(per_event)}


def _processes(server_pid: int) -> dict[str, int]:
    """The control plane's three processes: the server, its store writer (its one child) and the writer's
    projector (the writer's one child)."""
    writers = servers.children(server_pid)
    projectors = servers.children(writers[0]) if len(writers) == 1 else []
    if len(projectors) != 1:
        raise RuntimeError(f"expected one writer with one projector under {server_pid}: {writers}, {projectors}")
    return {"server": server_pid, "writer": writers[0], "projector": projectors[0]}


def _stop_outside_writes(projector: int, database: Path) -> None:
    """SIGSTOP the projector while it holds neither its write turn nor SQLite's write lock on the projections file
    (both taken here first, waiting for whatever it is writing): stopped inside a write, it would hold up whatever
    else writes that file (a retention sweep) for the whole load. Returns once every thread of it has stopped, so
    the CPU read next is all it spends until SIGCONT (the signal is delivered asynchronously)."""
    projections = projections_file(database)
    with open(f"{projections}-writeturn", "a+b") as turn:
        fcntl.flock(turn.fileno(), fcntl.LOCK_EX)
        try:
            conn = sqlite3.connect(projections, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                os.kill(projector, signal.SIGSTOP)
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        finally:
            fcntl.flock(turn.fileno(), fcntl.LOCK_UN)
    deadline = time.monotonic() + 10
    while not _all_stopped(projector):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the projector (pid {projector}) did not stop")
        time.sleep(0.001)


def _all_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state (``T`` in /proc/<pid>/task/<tid>/stat)."""
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with suppress(FileNotFoundError):  # a thread that ended meanwhile
            if stat.read_text().rpartition(")")[2].split()[0] not in ("T", "t"):
                return False
    return True


def projector_paused(workdir: Path, pairs: int = 3, seconds: float = 10.0) -> dict[str, Any]:
    server = servers.control_plane("bounds", TOKEN, f"sqlite:///{workdir / 'bounds.db'}", workdir).start()
    figures: dict[str, list[dict[str, Any]]] = {"running": [], "paused": []}
    try:
        projection_bench._wait_for_projector(server.port, TOKEN)
        for pair in range(pairs):
            for mode in ("running", "paused"):
                projection_bench._wait_caught_up(server.port, TOKEN)
                processes = _processes(server.pid)
                projector = processes["projector"]
                if mode == "paused":
                    _stop_outside_writes(projector, workdir / "bounds.db")
                cpu = {name: servers.own_cpu_seconds(pid) for name, pid in processes.items()}
                started = time.perf_counter()
                try:
                    result = projection_bench._load([server.port], TOKEN, f"{mode}-{pair}", EVENTS_PER_REQUEST, 32, seconds)
                finally:
                    if mode == "paused":
                        os.kill(projector, signal.SIGCONT)
                load = time.perf_counter() - started
                # CPU µs per accepted event, each process on its own, over the load (the paused projector: none).
                spent = {f"{name}_us": (servers.own_cpu_seconds(pid) - cpu[name]) / max(result.units, 1) * 1e6 for name, pid in processes.items()}
                drain = projection_bench._wait_caught_up(server.port, TOKEN)
                figures[mode].append({"accepted_per_s": result.units / load, "drain_s": drain,
                                      "accepted_and_projected_per_s": result.units / (load + drain), "errors": result.errors,
                                      "error_samples": result.error_samples[:3], **spent})
    finally:
        server.stop()
    running = statistics.median(each["accepted_per_s"] for each in figures["running"])
    paused = statistics.median(each["accepted_per_s"] for each in figures["paused"])
    return {**figures, "accepted_ratio": paused / running}


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="outrider-bounds-") as folder:
        results = {"log_layout": log_layout(Path(folder)), "projector_paused": projector_paused(Path(folder), pairs)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
