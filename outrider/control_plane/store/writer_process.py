"""The store's writer in a child process of its own (``store_writer = "process"``, the default).

Why a process: ingestion has two Python stages, the request loop (HTTP, JSON, validation) and the writer
(SQL statements, the run fold, the commit). In one process they share one interpreter lock, and measured
end to end the writer — the serial stage — spent about 40 % of its time waiting for it while the loop
parsed the next requests (docs/performance.md). In a child process the writer has a core and a lock of
its own. Nothing else changes: there is still exactly one writer (the same ``Store._run_writer`` group
commit, run cache and fold), a request is answered only after the child reports its commit, and reads keep
using the server's own connections.

Protocol: pickled messages on a socket pair, in order.

- parent → child: a list of operations, each ``("submit", [(ident, encoded), ...])`` (one loop's hand-over: one
  item of the writer's queue; ``encoded``: a request's events as the log appends them, ``store.Encoded``,
  serialised by the server's event loop), ``("reject", ident, reason, count)``,
  ``("probe", ident)``, ``("listeners", bool)`` (whether anyone subscribes to live updates) or ``("stop",)``.
- child → parent, after each group: ``(answers, last_commit_error, published)`` with ``answers`` a list of
  ``(ident, (accepted, duplicates, position))`` or ``(ident, "why it failed")``.

If the server process dies (``kill -9``), the child reads end-of-file, finishes the group in hand and
exits; nothing unanswered was acknowledged. If the child dies, every waiting request gets
:class:`~outrider.control_plane.store.StoreUnavailable` (503) and readiness turns false.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import itertools
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from outrider.control_plane import settings, store
from outrider.control_plane.store import child_process, engine, projector, projector_process

log = logging.getLogger(__name__)

#: The child's garbage-collection thresholds (see :func:`main`).
GC_THRESHOLDS = (100_000, 50, 50)
#: How long the child's threads may hold the interpreter lock while another waits for it (see :func:`main`).
SWITCH_INTERVAL_SECONDS = 0.0005


class RemoteWriter:
    """The server's side: sends the store's queue items to the child and settles their futures from its answers.

    A child that dies unexpectedly (the kernel's OOM killer, a crash) fails the requests waiting on it (503;
    clients retry, idempotently) and is started again after ``RESTART_DELAY_SECONDS``; meanwhile the store
    reports its writer as not running (readiness 503).
    """

    RESTART_DELAY_SECONDS = 1.0

    def __init__(self, owner: store.Store) -> None:
        self._store = owner
        self._idents = itertools.count(1)
        self._waiting: dict[int, Any] = {}  # ident -> the future of a submission, rejection or probe
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._connected = False  # a child is running and its socket open (set by _spawn, cleared by the receiver)
        #: The lease holder name of the child's projector: the server releases the lease after stopping it.
        self.projector_name = projector.holder_name()

    def start(self) -> None:
        self._spawn()
        self._thread("sender", self._send_loop)

    def _thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=f"outrider-store-writer-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _spawn(self) -> None:
        process, ours = child_process.spawn(__name__)
        conn = Connection(ours.detach())
        conn.send_bytes(self._store.settings.model_dump_json().encode())
        conn.send_bytes(self.projector_name.encode())
        conn.send_bytes(pickle.dumps([("listeners", self._store._has_listeners())]))
        self._process, self._conn = process, conn
        self._connected = True
        self._thread("receiver", functools.partial(self._receive_loop, process, conn))

    @property
    def alive(self) -> bool:
        """Whether a child is there to take submissions. Read on every request, so it reads a flag the receiver
        clears when the child's socket closes rather than asking the kernel (``poll()`` releases the interpreter
        lock, and the event loop then waited for the sender thread to hand it back)."""
        return not self._stopping and self._connected

    def put(self, item: Any) -> None:
        """Queue a store item (or a ``("listeners", bool)`` notice) for the child; never blocks the caller."""
        self._outbox.put(item)

    def stop(self, timeout: float = 30.0) -> None:
        """Let the child finish what it was sent, then wait for it (and kill it if it hangs).

        When no answer is outstanding the child holds no transaction of ours, so it is stopped at once rather
        than told to: a server stopped right after it started would otherwise wait for the child to finish
        loading before it could read the stop."""
        with self._lock:
            idle = not self._waiting
        self._stopping = True
        process = self._process
        if idle and process is not None:
            process.kill()
        self._outbox.put(("stop",))
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("the store writer process did not stop within %.0f s; killing it", timeout)
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=5)

    def _register(self, future: Any) -> int:
        ident = next(self._idents)
        with self._lock:
            self._waiting[ident] = future
        return ident

    def _operation(self, item: Any) -> tuple[Any, ...] | None:
        """The message for one queued item (None when there is nothing to send: its events could not be encoded)."""
        if isinstance(item, tuple):  # ("listeners", bool) or ("stop",)
            return item
        if isinstance(item, store._Rejection):
            return ("reject", self._register(item.future), item.reason, item.count)
        if isinstance(item, store._Probe):
            return ("probe", self._register(item.future))
        encoded = []
        for each in item if isinstance(item, list) else [item]:
            try:
                payload = store.encode(each.events)  # submit's events; submit_async's were encoded in the loop
            except Exception as exc:  # noqa: BLE001 — that request fails, the others go on
                log.exception("could not hand events to the store writer")
                store._resolve([(each.future, store.StoreUnavailable(f"could not encode the events: {type(exc).__name__}"))])
                continue
            encoded.append((self._register(each.future), payload))
        return ("submit", encoded) if encoded else None

    def _send_loop(self) -> None:
        """Send what the server queued, everything pending as one message (a thread: a full socket buffer
        must never block the event loop)."""
        while True:
            operations: list[tuple[Any, ...]] = []
            item = self._outbox.get()
            while True:
                operation = self._operation(item)
                if operation is not None:
                    operations.append(operation)
                if item == ("stop",):
                    break
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
            conn = self._conn
            try:
                if conn is None:
                    raise OSError("no writer process")
                conn.send_bytes(pickle.dumps(operations, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:  # the child is gone: the receiver fails what waits and starts another
                self._fail_all("the store writer process is gone")
            if operations and operations[-1] == ("stop",):
                return

    def _receive_loop(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        try:
            while True:
                answers, last_error, published = pickle.loads(conn.recv_bytes())
                self._store.last_commit_error = last_error
                if published:
                    self._store._publish(published)  # subscribers hear of the events no later than their posters
                settled = []
                with self._lock:
                    for ident, outcome in answers:
                        future = self._waiting.pop(ident, None)
                        if future is not None:
                            settled.append((future, store.StoreUnavailable(outcome) if isinstance(outcome, str) else outcome))
                store._resolve(settled)
        except (EOFError, OSError):
            pass
        except Exception:  # noqa: BLE001 — a garbled answer: nothing it answered can be trusted
            log.exception("bad answer from the store writer process")
            process.kill()
        self._connected = False
        code = process.wait()
        conn.close()
        self._fail_all(f"the store writer process exited (code {code})")
        if self._stopping:
            return
        log.error("the store writer process exited with code %s; starting another in %.0f s", code, self.RESTART_DELAY_SECONDS)
        time.sleep(self.RESTART_DELAY_SECONDS)
        if not self._stopping:
            self._spawn()

    def _fail_all(self, why: str) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        store._resolve([(future, store.StoreUnavailable(why)) for future in waiting])


class _ChildStore(store.Store):
    """The store in the child: the writer loop of :class:`Store` fed from the socket, answering after each group."""

    def __init__(self, config: settings.Settings, conn: Connection) -> None:
        super().__init__(config)
        self._conn = conn
        self._send_lock = threading.Lock()
        self._answers: list[tuple[int, Any]] = []
        self._published: list[dict[str, Any]] = []
        self._listening = False

    def _engine_options(self) -> dict[str, Any]:
        """The appender's connection: a larger page cache and rarer WAL checkpoints (``engine``)."""
        return {"cache_mb": engine.WRITER_CACHE_MB, "autocheckpoint_pages": engine.WRITER_AUTOCHECKPOINT_PAGES}

    def _has_listeners(self) -> bool:
        return self._listening

    def _publish(self, items: list[dict[str, Any]]) -> None:
        self._published.extend(items)

    def _commit_group(self, group: list[Any]) -> None:
        super()._commit_group(group)
        answers, self._answers = self._answers, []
        published, self._published = self._published, []
        self._send((answers, self.last_commit_error, published))

    def _send(self, message: Any) -> None:
        # OSError: the server is gone; the reader sees end-of-file and stops the writer.
        with self._send_lock, contextlib.suppress(OSError):
            self._conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _answered(self, ident: int, future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        self._answers.append((ident, str(error) if error is not None else future.result()))

    def _future(self, ident: int) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.add_done_callback(functools.partial(self._answered, ident))
        return future

    def read_socket(self) -> None:
        """Turn the server's messages into the writer's queue items. However it ends (a stop, the server gone,
        a bug), the writer is told to finish."""
        try:
            while self._take(pickle.loads(self._conn.recv_bytes())):
                pass
        except (EOFError, OSError):
            pass
        except Exception:  # noqa: BLE001 — stop writing rather than guess
            log.exception("bad message from the server")
        finally:
            self._queue.put(store._STOP)

    def _take(self, operations: list[tuple[Any, ...]]) -> bool:
        """Queue one message's operations; False after a stop."""
        for operation in operations:
            kind = operation[0]
            if kind == "submit":
                self._queue.put([store._Submission(encoded, self._future(ident)) for ident, encoded in operation[1]])
            elif kind == "reject":
                self._queue.put(store._Rejection(operation[2], operation[3], self._future(operation[1])))
            elif kind == "probe":
                self._queue.put(store._Probe(self._future(operation[1])))
            elif kind == "listeners":
                self._listening = bool(operation[1])
            elif kind == "stop":
                return False
        return True


def main(fd: int) -> None:
    """The child: read the settings, then run the writer until told to stop or the server is gone."""
    # Ctrl-C in a terminal reaches the whole process group; the server stops the writer in order instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     [store writer %(process)d] %(message)s")
    conn = Connection(fd)
    config = settings.Settings.model_validate_json(conn.recv_bytes())
    projector_name = conn.recv_bytes().decode()
    projector_child: projector_process.ProjectorProcess | None = None
    if config.projector_enabled:  # in a process of its own: appending and projecting each get a core
        projector_child = projector_process.ProjectorProcess(config, projector_name)
        projector_child.fork(close=(conn.fileno(),))  # first, while this process runs no thread of its own
    writer = _ChildStore(config, conn)
    writer.projector = projector_child
    reader = threading.Thread(target=writer.read_socket, name="outrider-store-writer-reader", daemon=True)
    gc.collect()
    gc.freeze()  # as the server does: modules and models live as long as the process
    # The events of the groups in hand are the writer's only many objects, and they hold no cycles; with the
    # default thresholds, collections traversing them cost ~10 µs of the writer's time per event (measured).
    gc.set_threshold(*GC_THRESHOLDS)
    # The reader hands each request to the writer thread, which then commits: with CPython's default 5 ms switch
    # interval, whichever of the two woke from I/O waited up to that long for the other to let go of the
    # interpreter lock, on every request's path (measured with the server's interval: docs/performance.md).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    reader.start()
    if projector_child is not None:
        projector_child.watch()
    try:
        writer._run_writer()
    finally:
        if writer.projector is not None:
            writer.projector.stop()
        writer.engine.dispose()
        conn.close()
    os._exit(0)  # the reader may still block on the socket; nothing else is left to do
