"""The server's side of the store's writer process (``store_writer = "process"``, the default): it starts the
child (``store.writer_process``), sends it what the store queues, and settles the requests' futures from its answers.

Why a process, and the protocol between the two: ``store.writer_process``. This side serves its socket in an asyncio
event loop, the server's own when the app opens the store (see :class:`RemoteWriter`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import pickle
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from outrider.control_plane.store import child_process, handover, projector
from outrider.control_plane.store.errors import StoreUnavailable
from outrider.control_plane.store.log_format import encode

if TYPE_CHECKING:
    from outrider.control_plane.store import Store

log = logging.getLogger(__name__)

#: The child's module: started by name, so that this module does not import it (it imports the store).
CHILD_MODULE = "outrider.control_plane.store.writer_process"


class RemoteWriter:
    """The server's side: sends the store's queue items to the child and settles their futures from its answers.

    All of its socket I/O runs in one asyncio event loop, the "I/O loop": the server's own loop when the store is
    opened by the app (``Store.open(loop=...)``), else a loop on a thread of its own. In the server's loop a request's
    events go to the child and its answer comes back without any other thread: with a sender and a receiver thread,
    each hand-over and each answer waited for the busy loop to let go of the interpreter lock and for a core to run
    on: serving the socket in the loop gained 6-8 % of batched and single-event throughput in interleaved A/B cells
    (docs/performance.md, eighteenth session).

    A child that dies unexpectedly (the kernel's OOM killer, a crash) fails the requests waiting on it (503;
    clients retry, idempotently) and is started again after ``RESTART_DELAY_SECONDS``; meanwhile the store
    reports its writer as not running (readiness 503).
    """

    RESTART_DELAY_SECONDS = 1.0
    #: How much the I/O loop reads from the child's socket per wake-up.
    READ_BYTES = 1 << 18

    def __init__(self, owner: Store) -> None:
        self._store = owner
        self._idents = itertools.count(1)
        self._waiting: dict[int, Any] = {}  # ident -> the future of a submission, rejection or probe
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0  # threading.get_ident() of the I/O loop's thread
        self._own_loop: threading.Thread | None = None  # the I/O loop's thread, when the store has no loop to use
        self._posted = 0  # puts from other threads not yet run in the I/O loop (see put)
        self._posted_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._unsent: collections.deque[memoryview] = collections.deque()  # what the socket has not taken yet
        self._unread = bytearray()  # the start of an answer whose end has not arrived
        self._stopping = False
        self._gone = threading.Event()  # set once a stopped child's exit has been handled
        self._connected = False  # a child is running and its socket open (set on attach, cleared when it is lost)
        #: The lease holder name of the child's projector: the server releases the lease after stopping it.
        self.projector_name = projector.holder_name()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the child; ``loop``: the running loop of the calling thread to do the socket I/O in (the server's),
        or None for a loop on a thread of its own."""
        if loop is not None and asyncio.get_running_loop() is not loop:  # RuntimeError when none is running
            raise RuntimeError("start the store writer from the loop it is to use")
        if loop is None:
            loop = asyncio.new_event_loop()
            self._own_loop = threading.Thread(target=loop.run_forever, name="outrider-store-writer-io", daemon=True)
            self._own_loop.start()
        self._loop = loop
        self._loop_thread = self._own_loop.ident if self._own_loop is not None else threading.get_ident()  # type: ignore[assignment]
        self._in_loop(self._spawn)

    def _in_loop(self, call: Any) -> None:
        """Run ``call`` in the I/O loop and wait for it (at once when this is the loop's thread)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            call()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                call()
                done.set_result(None)
            except BaseException as exc:  # noqa: BLE001 — re-raised in the waiting thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        done.result()

    def _spawn(self) -> None:
        """Start a child and attach its socket to the I/O loop (runs in the loop)."""
        assert self._loop is not None
        process, ours = child_process.spawn(CHILD_MODULE)
        ours.setblocking(False)
        self._process, self._socket = process, ours
        self._unsent.clear()
        self._unread.clear()
        self._loop.add_reader(ours.fileno(), self._readable)
        self._write(self._store.settings.model_dump_json().encode())
        self._write(self.projector_name.encode())
        self._write(pickle.dumps([("listeners", self._store._has_listeners())]))
        self._connected = True

    @property
    def alive(self) -> bool:
        """Whether a child is there to take submissions. Read on every request, so it reads a flag that is cleared
        when the child's socket closes rather than asking the kernel."""
        return not self._stopping and self._connected

    def put(self, item: Any) -> None:
        """Send a store item (or a ``("listeners", bool)`` notice or ``("stop",)``) to the child; never blocks the
        caller. In the I/O loop it is sent at once; from another thread it is posted to the loop. Items keep the
        order of their puts: while posted ones wait, the loop's own wait behind them."""
        if threading.get_ident() == self._loop_thread and not self._posted:
            self._send(item)
            return
        assert self._loop is not None
        with self._posted_lock:
            self._posted += 1
        try:
            self._loop.call_soon_threadsafe(self._send_posted, item)
        except RuntimeError:  # the loop is closed: nobody will send it
            with self._posted_lock:
                self._posted -= 1
            self._fail_item(item, "the store writer is not running")

    def _send_posted(self, item: Any) -> None:
        with self._posted_lock:
            self._posted -= 1
        self._send(item)

    def stop(self, timeout: float = 30.0) -> None:
        """Let the child finish what it was sent, then wait for it (and kill it if it hangs). Not from the I/O
        loop's thread: the loop must go on reading the child's last answers meanwhile.

        When no answer is outstanding the child holds no transaction of ours, so it is stopped at once rather
        than told to: a server stopped right after it started would otherwise wait for the child to finish
        loading before it could read the stop."""
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("stop the store writer from another thread than its I/O loop (asyncio.to_thread)")
        with self._lock:
            idle = not self._waiting
        self._stopping = True
        process = self._process
        if idle and process is not None:
            process.kill()
        self.put(("stop",))
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("the store writer process did not stop within %.0f s; killing it", timeout)
                process.kill()
                process.wait()
            if not self._gone.wait(timeout=5):  # the loop did not see the socket close (it is no longer running)
                self._fail_all("the store writer stopped")
        if self._own_loop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._own_loop.join(timeout=5)
            self._loop.close()

    def _register(self, future: Any) -> int:
        ident = next(self._idents)
        with self._lock:
            self._waiting[ident] = future
        return ident

    def _operation(self, item: Any) -> tuple[Any, ...] | None:
        """The message for one queued item (None when there is nothing to send: its events could not be encoded)."""
        if isinstance(item, tuple):  # ("listeners", bool) or ("stop",)
            return item
        if isinstance(item, handover.Rejection):
            return ("reject", self._register(item.future), item.reason, item.count)
        if isinstance(item, handover.Probe):
            return ("probe", self._register(item.future))
        encoded = []
        for each in item if isinstance(item, list) else [item]:
            try:
                payload = encode(each.events)  # submit's events; submit_async's were encoded in the loop
            except Exception as exc:  # noqa: BLE001 — that request fails, the others go on
                log.exception("could not hand events to the store writer")
                handover.resolve([(each.future, StoreUnavailable(f"could not encode the events: {type(exc).__name__}"))])
                continue
            encoded.append((self._register(each.future), payload))
        return ("submit", encoded) if encoded else None

    def _send(self, item: Any) -> None:
        """One item as one message (runs in the I/O loop)."""
        if not self._connected:
            self._fail_item(item, "the store writer process is gone")
            return
        operation = self._operation(item)
        if operation is not None:
            self._write(pickle.dumps([operation], protocol=pickle.HIGHEST_PROTOCOL))

    def _write(self, message: bytes) -> None:
        """Send one message, framed as ``multiprocessing.connection`` frames it (the child reads it with
        ``recv_bytes``); what the socket does not take now is sent when it is writable again (runs in the loop)."""
        assert self._socket is not None and self._loop is not None
        header = len(message).to_bytes(4, "big", signed=True)
        if self._unsent:
            self._unsent.extend((memoryview(header), memoryview(message)))
            return
        try:
            sent = self._socket.sendmsg((header, message))
        except BlockingIOError:
            sent = 0
        except OSError:  # the child is gone: reading its end-of-file fails what waits and starts another
            return
        if sent < len(header):
            self._unsent.extend((memoryview(header)[sent:], memoryview(message)))
        elif sent < len(header) + len(message):
            self._unsent.append(memoryview(message)[sent - len(header):])
        else:
            return
        self._loop.add_writer(self._socket.fileno(), self._writable)

    def _writable(self) -> None:
        assert self._socket is not None and self._loop is not None
        while self._unsent:
            try:
                sent = self._socket.send(self._unsent[0])
            except BlockingIOError:
                return
            except OSError:
                break
            if sent < len(self._unsent[0]):
                self._unsent[0] = self._unsent[0][sent:]
                return
            self._unsent.popleft()
        self._loop.remove_writer(self._socket.fileno())

    def _readable(self) -> None:
        """Read the child's answers and settle their futures: this loop's at once, others' through their loop."""
        assert self._socket is not None and self._loop is not None
        try:
            chunk = self._socket.recv(self.READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost()
            return
        unread = self._unread
        unread += chunk
        settled: list[tuple[Any, Any]] = []
        start = 0
        try:
            while len(unread) - start >= 4:
                end = start + 4 + int.from_bytes(unread[start : start + 4], "big", signed=True)
                if len(unread) < end:
                    break
                self._answered(pickle.loads(unread[start + 4 : end]), settled)
                start = end
        except Exception:  # noqa: BLE001 — a garbled answer: nothing it answered can be trusted
            log.exception("bad answer from the store writer process")
            if self._process is not None:
                self._process.kill()
            self._lost()
        del unread[:start]
        handover.resolve(settled, running=self._loop)

    def _answered(self, message: Any, settled: list[tuple[Any, Any]]) -> None:
        answers, last_error, published = message
        self._store.last_commit_error = last_error
        if published:
            self._store._publish(published)  # subscribers hear of the events no later than their posters
        with self._lock:
            for ident, outcome in answers:
                future = self._waiting.pop(ident, None)
                if future is not None:
                    settled.append((future, StoreUnavailable(outcome) if isinstance(outcome, str) else outcome))

    def _lost(self) -> None:
        """The child's socket closed (runs in the loop): detach it; a thread waits for the child, fails what
        waited on it and, unless the server is stopping, starts another."""
        if self._socket is None or self._loop is None:
            return
        self._connected = False
        self._loop.remove_reader(self._socket.fileno())
        self._loop.remove_writer(self._socket.fileno())
        self._unsent.clear()
        self._unread.clear()
        process, sock, self._socket = self._process, self._socket, None
        threading.Thread(target=self._after_exit, args=(process, sock), name="outrider-store-writer-restart", daemon=True).start()

    def _after_exit(self, process: subprocess.Popen[bytes] | None, sock: socket.socket) -> None:
        code = process.wait() if process is not None else None
        sock.close()
        self._fail_all(f"the store writer process exited (code {code})")
        if self._stopping:
            self._gone.set()
            return
        log.error("the store writer process exited with code %s; starting another in %.0f s", code, self.RESTART_DELAY_SECONDS)
        time.sleep(self.RESTART_DELAY_SECONDS)
        if not self._stopping:
            try:
                self._in_loop(self._spawn)
            except RuntimeError:  # the loop is closed: the server is gone
                log.warning("the store writer was not started again: its I/O loop is closed")

    def _fail_item(self, item: Any, why: str) -> None:
        """Fail the futures of an item that could not be sent (it was never registered)."""
        items = item if isinstance(item, list) else [item]
        handover.resolve([(each.future, StoreUnavailable(why)) for each in items if hasattr(each, "future")])

    def _fail_all(self, why: str) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting.values()), {}
        handover.resolve([(future, StoreUnavailable(why)) for future in waiting])
