"""The store's writer in a child process of its own (``store_writer = "process"``, the default).

Why a process: ingestion has two Python stages, the request loop (HTTP, JSON, validation) and the writer
(SQL statements, the run fold, the commit). In one process they share one interpreter lock, and measured
end to end the writer — the serial stage — spent about 40 % of its time waiting for it while the loop
parsed the next requests (docs/performance.md). In a child process the writer has a core and a lock of
its own. Nothing else changes: there is still exactly one writer (the same ``Store._run_writer`` group
commit, run cache and fold), a request is answered only after the child reports its commit, and reads keep
using the server's own connections.

Protocol: pickled messages on a socket pair, in order, framed as ``multiprocessing.connection`` frames them (a
4-byte big-endian length, then the bytes): the child reads and writes with a ``Connection``; the server's side
reads and writes the socket in its I/O loop (``store.remote_writer.RemoteWriter``, which starts this module by name:
the store does not import it).

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
import logging
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from outrider.control_plane import settings, store
from outrider.control_plane.store import engine, handover, projector_process

log = logging.getLogger(__name__)

#: The child's garbage-collection thresholds (see :func:`main`).
GC_THRESHOLDS = (100_000, 50, 50)
#: How long the child's threads may hold the interpreter lock while another waits for it (see :func:`main`).
SWITCH_INTERVAL_SECONDS = 0.0005


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
            self._queue.put(handover.STOP)

    def _take(self, operations: list[tuple[Any, ...]]) -> bool:
        """Queue one message's operations; False after a stop."""
        for operation in operations:
            kind = operation[0]
            if kind == "submit":
                self._queue.put([handover.Submission(encoded, self._future(ident)) for ident, encoded in operation[1]])
            elif kind == "reject":
                self._queue.put(handover.Rejection(operation[2], operation[3], self._future(operation[1])))
            elif kind == "probe":
                self._queue.put(handover.Probe(self._future(operation[1])))
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
