"""The projector in a process of its own, a child of the store's writer process (``store_writer = "process"``).

Why a process: the appender and the projector each take about half a core at full load. Sharing the writer
process's interpreter lock, they made that process the bottleneck of ingestion (one core busy, the second
half idle: docs/performance.md, "Projector in its own process"). Apart from where it runs, nothing changes:
the same :class:`~outrider.control_plane.store.projector.Projector`, lease, checkpoint and fencing; the
writer wakes it after each commit, as it woke the thread.

The first child is forked from the writer process before it starts any thread (it begins projecting at once,
with the code already loaded); a replacement is a fresh interpreter, sent the settings and the lease holder's
name first. Then, on a socket pair, the writer sends one byte per commit (a wake-up; dropped when the socket's buffer is full, since a pending wake-up already covers it).
End-of-file means stop: the projector finishes its batch, releases its lease and exits. The child also asks
the kernel to kill it when the writer process dies (``PR_SET_PDEATHSIG``), so a replacement writer, which
reuses the lease name, never has an older projector of the same name beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from outrider.control_plane import settings
from outrider.control_plane.store import child_process
from outrider.control_plane.store.engine import WRITER_AUTOCHECKPOINT_PAGES, WRITER_CACHE_MB, make_engine
from outrider.control_plane.store.projector import Projector

log = logging.getLogger(__name__)

#: The child's garbage-collection thresholds: a batch's parsed events hold no cycles (as in the writer).
GC_THRESHOLDS = (100_000, 50, 50)
#: How long one of the child's threads may hold the interpreter lock while another waits for it. The projector
#: folds a batch while its write thread runs the one before (``Projector._step_pipelined``), and the write thread
#: needs the lock back after each statement: at Python's 5 ms it waited that long each time. 0.1 ms gave the best
#: sustained rate of 0.1, 0.5 and 2 ms (docs/performance.md).
SWITCH_INTERVAL_SECONDS = 0.0001
_PR_SET_PDEATHSIG = 1


class ProjectorProcess:
    """The writer's handle on its projector child: :meth:`wake` after each commit, :meth:`stop` at the end.

    The first child is forked (:meth:`fork`, while the writer process is still single-threaded): it starts at
    once with the modules already loaded, so the projection is as prompt after a start as when it was a thread.
    A child that dies unexpectedly is started again, after ``RESTART_DELAY_SECONDS``, by a watcher thread, as a
    fresh interpreter (forking a process that runs threads could copy a lock some thread holds)."""

    RESTART_DELAY_SECONDS = 1.0

    def __init__(self, config: settings.Settings, name: str) -> None:
        self._config = config
        self.name = name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None  # the restarted child (None: the forked one)
        self._socket: socket.socket | None = None
        self._watcher: threading.Thread | None = None

    def fork(self, close: tuple[int, ...] = ()) -> None:
        """Fork the first child, which closes the descriptors ``close`` (the writer's socket to the server: the
        server must see end-of-file when the writer dies). Call it before the calling process starts a thread."""
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                ours.close()
                for fd in close:
                    os.close(fd)
                _project(self._config, self.name, theirs)
            except BaseException:  # noqa: BLE001 — never return into the writer's code in the child
                log.exception("the projector process failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self._pid, self._socket = pid, ours

    def watch(self) -> None:
        """Start the watcher thread (after :meth:`fork`)."""
        self._watcher = threading.Thread(target=self._watch, name="outrider-projector-watcher", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        process, ours = child_process.spawn(__name__)
        conn = Connection(os.dup(ours.fileno()))
        conn.send_bytes(self._config.model_dump_json().encode())
        conn.send_bytes(self.name.encode())
        conn.close()
        ours.setblocking(False)
        with self._lock:
            self._pid, self._popen, self._socket = process.pid, process, ours

    def _wait(self) -> int:
        """Wait for the current child to exit; its exit status."""
        if self._popen is not None:
            return self._popen.wait()
        assert self._pid is not None
        return os.waitstatus_to_exitcode(os.waitpid(self._pid, 0)[1])

    def wake(self) -> None:
        """Tell the projector new events are committed (never blocks: a full buffer already holds a wake-up)."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # BlockingIOError (full) or the child is gone (the watcher sees it)
                sock.send(b"w")

    def stop(self, timeout: float = 30.0) -> None:
        """Close the socket (the child finishes its batch, releases its lease and exits) and wait for it."""
        self._stopping.set()
        with self._lock:
            pid, sock, self._socket = self._pid, self._socket, None
        if sock is not None:
            sock.close()
        if self._watcher is not None:
            self._watcher.join(timeout=timeout)
            if self._watcher.is_alive() and pid is not None:
                log.error("the projector process did not stop within %.0f s; killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._watcher.join(timeout=5)

    def _watch(self) -> None:
        while True:
            code = self._wait()
            if self._stopping.is_set():
                return
            log.error("the projector process exited with code %s; starting another in %.0f s", code, self.RESTART_DELAY_SECONDS)
            with self._lock:
                if self._socket is not None:
                    self._socket.close()
                    self._socket = None
            while not self._stopping.wait(self.RESTART_DELAY_SECONDS):
                try:
                    self._spawn()
                    break
                except OSError:  # no memory or no pids left: try again, never leave the writer without one
                    log.exception("could not start a projector process; trying again")
            else:
                return


#: SQLite's ``synchronous`` for the projector's commits. Projections are derived from the log, and the checkpoint
#: moves in the same transaction as the rows it covers: a power cut that loses the last projector commits (never
#: an append, whose FULL commit also syncs every WAL frame before it) only sends the projector back to an earlier
#: checkpoint, from which it projects the same events again. WAL keeps the database consistent either way. Not
#: waiting for an fsync per batch was a tenth of the projector's time (docs/performance.md).
PROJECTOR_SYNCHRONOUS = "NORMAL"

def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the writer process (our parent) dies (Linux; elsewhere end-of-file stops us)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(fd: int) -> None:
    """A restarted child (a fresh interpreter): read the settings and the lease name, then project."""
    conn = Connection(fd)
    config = settings.Settings.model_validate_json(conn.recv_bytes())
    name = conn.recv_bytes().decode()
    sock = socket.socket(fileno=os.dup(fd))
    conn.close()
    _project(config, name, sock)
    os._exit(0)


def _project(config: settings.Settings, name: str, sock: socket.socket) -> None:
    """The child's work: project until the writer closes the socket (or dies: then the kernel kills us)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer stops us in order
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     [projector %(process)d] %(message)s", force=True)
    if os.getppid() == 1:  # the writer died before we could ask to die with it
        return
    engine = make_engine(config.database_url, PROJECTOR_SYNCHRONOUS, cache_mb=WRITER_CACHE_MB,
                         autocheckpoint_pages=WRITER_AUTOCHECKPOINT_PAGES)
    projector = Projector(engine, batch_events=config.projector_batch_events, poll_seconds=config.projector_poll_seconds,
                          lease_seconds=config.projector_lease_seconds, name=name,
                          defer_seconds=config.projector_defer_seconds)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    projector.start()
    try:
        while True:
            try:
                data = sock.recv(4096)
            except InterruptedError:
                continue
            except OSError:
                break
            if not data:
                break
            projector.wake()
    finally:
        projector.stop()
        engine.dispose()
        sock.close()
