"""The worker's event emitter: buffers CloudEvents and posts them in batches from a background thread.

An agent must never wait on its observability. :meth:`Client.emit` validates the event, appends it to a
bounded in-memory buffer and returns; it never touches the network. A daemon thread takes up to
``batch_size`` events at a time (as soon as that many are buffered, or every ``flush_interval`` seconds,
or on :meth:`Client.flush`) and posts them to ``{url}/v1/events`` as ``application/cloudevents-batch+json``
with the bearer token. A failed post (connection error, timeout, 408, 429, 5xx) is retried with exponential
backoff and jitter, resending the same events with the same ids, so the control plane stores each once
(it deduplicates on source and id). A refusal that retrying cannot fix (400, 401, 403, 413, 415, 422)
discards that batch and counts it as ``rejected``. When the buffer is full the oldest buffered event is
dropped and counted as ``dropped`` (so are events still undelivered when :meth:`Client.close` gives up). :meth:`Client.stats` reports every counter.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from outrider.common import credentials, events, read_your_writes

if TYPE_CHECKING:
    from outrider.client import run as run_module

log = logging.getLogger("outrider.client")

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
#: Answers after which resending the same batch can succeed.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 507})  # 507: over quota until the sweep frees space


class ClientError(ValueError):
    """The event the caller built is not valid (a bug in the caller; raised by ``emit``, never from the network)."""


@dataclass(frozen=True)
class Stats:
    """Counters since the client started; ``pending`` are buffered or in flight."""

    emitted: int
    delivered: int
    duplicates: int
    dropped: int
    rejected: int
    pending: int
    attempts: int
    failed_attempts: int
    last_error: str | None
    #: The highest event-log position the control plane acknowledged (0: none yet). A reader that must see these
    #: events passes it as ?min_position= or the Outrider-Min-Position header (read-your-writes).
    position: int = 0


class Client:
    """Emitter of one worker process; see the module docstring. Use as a context manager or call :meth:`close`.

    ``url`` and ``token`` default to the ``OUTRIDER_URL`` and ``OUTRIDER_TOKEN`` environment variables; without
    either token, the file named by ``OUTRIDER_TOKEN_FILE`` is read (the run credential the operator mounts
    into an admitted Run's Job), and read again whenever it changes, so a renewed credential is picked up.
    ``namespace`` (the tenant) defaults to ``OUTRIDER_RUN_NAMESPACE``; ``source`` (the CloudEvents source, the
    producer's identity) defaults to ``/workers/<hostname>``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        source: str | None = None,
        namespace: str | None = None,
        batch_size: int = 50,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        request_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 5.0,
    ) -> None:
        url = url if url is not None else os.environ.get("OUTRIDER_URL")
        if not url:
            raise ClientError("no control-plane URL: pass url= or set OUTRIDER_URL")
        if batch_size < 1 or max_buffer < 1 or flush_interval <= 0 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ClientError("batch_size and max_buffer must be >= 1, flush_interval and backoff_initial > 0, backoff_max >= backoff_initial")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("OUTRIDER_TOKEN", "")
        token_file = os.environ.get(credentials.TOKEN_FILE_ENV) if token is None and not self.token else None
        self._token_file = Path(token_file) if token_file else None
        self._token_mtime: float | None = None
        self._refresh_token()
        self.namespace = namespace if namespace is not None else (os.environ.get(credentials.RUN_NAMESPACE_ENV) or None)
        self.source = source or f"/workers/{os.environ.get('HOSTNAME') or socket.gethostname()}"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.close_timeout = close_timeout
        #: Ids are <session>-<n>: fixed when the event is emitted, so every retry of a batch resends the same ids.
        self.session = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._emitted = 0
        #: The log positions the control plane acknowledged (``Stats.position``).
        self.positions = read_your_writes.Session()
        self._settled = 0  # events delivered, refused or dropped: flush waits until this reaches its mark
        self._delivered = self._duplicates = self._dropped = self._rejected = 0
        self._attempts = self._failed_attempts = 0
        self._inflight = 0
        self._last_error: str | None = None
        self._flush_requested = False
        self._kicks = 0  # flush() and close() bump it: a retry waiting out its backoff goes at once
        self._oldest_at = 0.0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="outrider-client", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # --- the caller's side (never blocks on the network) --------------------------------------------

    def emit(
        self,
        type: str,
        *,
        runid: str | None = None,
        target: str | None = None,
        data: dict[str, Any] | None = None,
        id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Validate and buffer one event; its id. Raises :class:`ClientError` when the event is invalid.

        Pass ``id`` to make an event idempotent across processes (e.g. a restarted worker re-emitting
        ``run.started``); by default ids are unique per client and stable across retries.
        """
        number = next(self._ids)  # itertools.count: atomic, so concurrent emitters never share an id
        event = {
            "specversion": "1.0",
            "id": id or f"{self.session}-{number}",
            "source": self.source,
            "type": type,
            "time": (time or datetime.now(UTC)).isoformat(),
            "data": data or {},
        }
        if runid is not None:
            event["runid"] = runid
        if target is not None:
            event["target"] = target
        if self.namespace is not None:
            event["namespace"] = self.namespace
        validated, problems = events.validate_event(event)
        if validated is None:
            raise ClientError("; ".join(f"{p.field or 'event'}: {p.message}" for p in problems))
        body = validated.model_dump(mode="json", exclude_none=True)
        with self._lock:
            if self._closing:
                raise ClientError("the client is closed")
            self._emitted += 1
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()
                self._dropped += 1
                self._settled += 1
            self._buffer.append(body)
            if len(self._buffer) == 1:
                self._oldest_at = _now()  # the flush interval runs from the oldest buffered event
                self._lock.notify_all()
            elif len(self._buffer) >= self.batch_size:
                self._lock.notify_all()
        return str(body["id"])

    def run(self, run_id: str, target: str | None = None, *, include_traceback: bool = True) -> run_module.RunReporter:
        """A reporter of one run's events (stages, usage, logs, outcome); see :mod:`outrider.client.run`."""
        from outrider.client import run as run_module

        return run_module.RunReporter(self, run_id, target, include_traceback=include_traceback)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is delivered (or dropped/refused); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            mark = self._emitted
            self._flush_requested = True
            self._kicks += 1
            self._lock.notify_all()
            while self._settled < mark:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining if remaining is not None else 0.5)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout`` seconds, default ``close_timeout``) and stop the thread; False if events remain."""
        flushed = self.flush(self.close_timeout if timeout is None else timeout)
        undelivered = self.stats().pending
        with self._lock:
            self._closing = True
            self._kicks += 1
            self._lock.notify_all()
        # A thread stuck in a post to a silent server is not waited for beyond a second (it is a daemon).
        self._thread.join(timeout=self.request_timeout + 1 if flushed else 1.0)
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            self._settle_locked(left, dropped=left)
        atexit.unregister(self._at_exit)
        if not flushed:
            log.warning("outrider client closed with %d events undelivered (counted as dropped)", undelivered)
        return flushed

    def stats(self) -> Stats:
        with self._lock:
            return Stats(
                emitted=self._emitted, delivered=self._delivered, duplicates=self._duplicates, dropped=self._dropped,
                rejected=self._rejected, pending=self._emitted - self._settled, attempts=self._attempts,
                failed_attempts=self._failed_attempts, last_error=self._last_error, position=self.positions.position,
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _at_exit(self) -> None:
        if not self._closing:
            self.close()

    # --- the background thread ----------------------------------------------------------------------

    def _take(self) -> list[dict[str, Any]] | None:
        """The next batch to send, waiting until one is due; None when closing with nothing left."""
        with self._lock:
            while True:
                if self._buffer and (
                    len(self._buffer) >= self.batch_size or self._flush_requested or self._closing
                    or _now() >= self._oldest_at + self.flush_interval
                ):
                    break
                if self._closing:
                    return None
                if not self._buffer:
                    self._flush_requested = False
                    self._lock.wait()
                else:
                    self._lock.wait(max(0.0, self._oldest_at + self.flush_interval - _now()))
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            self._inflight = len(batch)
            if self._buffer:
                self._oldest_at = _now()
            else:
                self._flush_requested = False
            return batch

    def _refresh_token(self) -> None:
        """Read the token file again when it changed (a Secret update replaces the mounted file)."""
        if self._token_file is None:
            return
        try:
            mtime = self._token_file.stat().st_mtime
            if mtime != self._token_mtime:
                self.token = self._token_file.read_text(encoding="utf-8").strip()
                self._token_mtime = mtime
        except OSError as exc:
            log.warning("outrider: cannot read the token file %s: %s", self._token_file, exc)

    def _headers(self) -> dict[str, str]:
        self._refresh_token()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _run(self) -> None:
        headers = {"Content-Type": BATCH_CONTENT_TYPE}
        with httpx.Client(base_url=self.url, headers=headers, timeout=self.request_timeout, event_hooks=self.positions.hooks()) as http:
            while True:
                batch = self._take()
                if batch is None:
                    return
                if not self._deliver(http, batch):
                    return

    def _deliver(self, http: httpx.Client, batch: list[dict[str, Any]]) -> bool:
        """Post one batch until it is stored or refused; False when closing gave up on it."""
        body = json.dumps(batch, separators=(",", ":"))
        failures = 0
        while True:
            with self._lock:
                self._attempts += 1
            try:
                response = http.post("/v1/events", content=body, headers=self._headers())
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    answer = _json(response)
                    self._settle(len(batch), delivered=int(answer.get("accepted", len(batch))),
                                 duplicates=int(answer.get("duplicates", 0)))
                    return True
                error = f"HTTP {response.status_code}: {response.text[:500]}"
                if response.status_code not in RETRYABLE_STATUS:
                    return self._refused(http, batch, response, error)
            failures += 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** (failures - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)  # "equal jitter": workers that lost the server together spread out
            with self._lock:
                self._failed_attempts += 1
                self._last_error = error
                if self._closing:
                    self._settle_locked(len(batch), dropped=len(batch))
                    return False
                (log.warning if failures == 1 else log.debug)(
                    "outrider: posting %d events failed (%s); retrying with backoff", len(batch), error)
                kicks, until = self._kicks, _now() + delay
                while self._kicks == kicks and not self._closing and _now() < until:  # only flush()/close() cut it short
                    self._lock.wait(until - _now())

    def _refused(self, http: httpx.Client, batch: list[dict[str, Any]], response: httpx.Response, error: str) -> bool:
        """A 4xx is permanent: never retried, so a poison event cannot hold back the events behind it. The
        events it names (``detail[].index`` of a 422 or 403) are discarded and counted; the rest of the batch is
        sent again. A batch too large (413) is split in halves until each part fits or is a single event."""
        bad = _refused_indices(response) if response.status_code in (403, 422) else set()
        if len(batch) > 1 and bad and len(bad) < len(batch):
            log.error("outrider: the control plane refused %d of %d events (%s); they are discarded", len(bad), len(batch), error)
            self._settle(len(bad), rejected=len(bad), error=error)
            return self._deliver(http, [event for index, event in enumerate(batch) if index not in bad])
        if len(batch) > 1 and response.status_code == 413:
            half = len(batch) // 2
            return self._deliver(http, batch[:half]) and self._deliver(http, batch[half:])
        log.error("outrider: the control plane refused %d events (%s); they are discarded", len(batch), error)
        self._settle(len(batch), rejected=len(batch), error=error)
        return True

    def _settle(self, count: int, **counts: Any) -> None:
        with self._lock:
            self._settle_locked(count, **counts)

    def _settle_locked(self, count: int, *, delivered: int = 0, duplicates: int = 0, rejected: int = 0,
                       dropped: int = 0, error: str | None = None) -> None:
        self._delivered += delivered
        self._duplicates += duplicates
        self._rejected += rejected
        self._dropped += dropped
        self._settled += count
        self._inflight = 0
        if error is not None:
            self._last_error = error
        self._lock.notify_all()


def _now() -> float:
    return time.monotonic()


def _refused_indices(response: httpx.Response) -> set[int]:
    """The batch positions a refusal names (``detail: [{index, field, message}, …]``); empty when it names none."""
    detail = _json(response).get("detail")
    if not isinstance(detail, list):
        return set()
    return {item["index"] for item in detail if isinstance(item, dict) and type(item.get("index")) is int}


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
