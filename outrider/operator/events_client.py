"""Posts the operator's lifecycle events to the control plane without ever holding up reconciliation.

Handlers call :meth:`EventSender.emit`, which only appends to a bounded in-memory buffer; a background task
sends the buffer in batches (``POST {OUTRIDER_URL}/v1/events``, ``Content-Type:
application/cloudevents-batch+json``, bearer ``OUTRIDER_TOKEN``) and retries with exponential backoff while the
control plane is down. When the buffer is full the oldest event is dropped and counted
(``outrider_operator_events_dropped_total``). Event ids are deterministic (a hash of the object's uid and the
transition), so a replayed watch or a second replica posts duplicates the control plane recognises, not new
events. Without ``OUTRIDER_URL`` nothing is sent (logged once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import random
from typing import Any

import httpx

from outrider.common import events

logger = logging.getLogger(__name__)

SOURCE = "/outrider/operator"
CONTENT_TYPE = "application/cloudevents-batch+json"


def event_id(*parts: str) -> str:
    """A stable id for one transition of one object: the same inputs always give the same id."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def build(
    type_: events.EventType | str,
    *,
    id_parts: tuple[str, ...],
    time: dt.datetime,
    target: str | None = None,
    runid: str | None = None,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One CloudEvent as JSON, checked against the shared contract (a bug here fails loudly, not at the server)."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id(str(type_), *id_parts),
        "source": SOURCE,
        "type": str(type_),
        "time": time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data or {},
    }
    if target:
        raw["target"] = target
    if runid:
        raw["runid"] = runid
    if subject:
        raw["subject"] = subject
        kind, _, rest = subject.partition("/")
        if kind in ("runs", "targets") and "/" in rest:  # runs/<namespace>/<name>: the tenant the event belongs to
            raw["namespace"] = rest.split("/", 1)[0]
    _, problems = events.validate_event(raw)
    if problems:
        raise ValueError(f"operator built an invalid {type_} event: {[p.model_dump() for p in problems]}")
    return raw


@dataclasses.dataclass
class _Item:
    seq: int
    event: dict[str, Any]


class EventSender:
    """A bounded buffer and the task that drains it to the control plane."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        *,
        buffer_max: int = 10_000,
        batch_max: int = 100,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/events" if url else None
        self.token = token
        self.buffer_max = max(1, buffer_max)
        self.batch_max = max(1, batch_max)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.dropped = 0  # oldest events dropped because the buffer was full
        self.rejected = 0  # events the control plane refused as invalid (4xx other than auth)
        self.sent = 0
        self.duplicates = 0
        self.consecutive_errors = 0
        self._buffer: collections.deque[_Item] = collections.deque()
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned_disabled = False
        # Ids emitted lately: a watch replay or a repeated handler call emits the same transition again; skip it
        # here (the control plane would count it as a duplicate anyway). Bounded like the buffer.
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.recent_max = 4 * self.buffer_max

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; never blocks, never raises for a full buffer (the oldest event is dropped instead)."""
        if self.url is None:
            if not self._warned_disabled:
                logger.info("OUTRIDER_URL is not set: the operator's events are not sent to a control plane")
                self._warned_disabled = True
            return
        event_id_ = str(event.get("id"))
        if event_id_ in self._recent:
            return
        self._recent[event_id_] = None
        while len(self._recent) > self.recent_max:
            self._recent.popitem(last=False)
        self._seq += 1
        self._buffer.append(_Item(self._seq, event))
        while len(self._buffer) > self.buffer_max:
            self._buffer.popleft()
            self.dropped += 1
        self._wake.set()

    def start(self) -> None:
        if self.url is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outrider-events-sender")

    async def stop(self, *, flush_seconds: float = 2.0) -> None:
        """Try to deliver what is buffered for up to ``flush_seconds``, then stop."""
        if self._task is None:
            return
        deadline = asyncio.get_running_loop().time() + flush_seconds
        while self._buffer and self.consecutive_errors == 0 and asyncio.get_running_loop().time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        headers = {"Content-Type": CONTENT_TYPE}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delay = self.backoff_initial
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as http:
            while True:
                if not self._buffer:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = [self._buffer[i] for i in range(min(self.batch_max, len(self._buffer)))]
                ok = await self._send(http, batch)
                if ok:
                    delay = self.backoff_initial
                    continue
                # Back off with jitter; new events keep queueing meanwhile (bounded).
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(self.backoff_max, delay * 2)

    async def _send(self, http: httpx.AsyncClient, batch: list[_Item]) -> bool:
        assert self.url is not None
        try:
            response = await http.post(self.url, json=[item.event for item in batch])
        except httpx.HTTPError as exc:
            self._failed(f"control plane unreachable: {exc!r}")
            return False
        if response.status_code in (200, 201, 202):
            try:
                body = response.json()
                self.duplicates += int(body.get("duplicates") or 0)
            except ValueError:
                pass
            self._ack(batch[-1].seq)
            self.sent += len(batch)
            if self.consecutive_errors:
                logger.info("control plane reachable again; delivering %d buffered event(s)", len(self._buffer))
            self.consecutive_errors = 0
            return True
        if response.status_code in (400, 413, 422):
            # The server refused the batch as invalid: retrying cannot help. Keep nothing that cannot be sent.
            logger.error("control plane refused %d event(s) (%d): %s", len(batch), response.status_code, response.text[:500])
            self.rejected += len(batch)
            self._ack(batch[-1].seq)
            return True
        self._failed(f"control plane answered {response.status_code}: {response.text[:200]}")
        return False

    def _ack(self, seq: int) -> None:
        while self._buffer and self._buffer[0].seq <= seq:
            self._buffer.popleft()

    def _failed(self, why: str) -> None:
        self.consecutive_errors += 1
        if self.consecutive_errors in (1, 10) or self.consecutive_errors % 100 == 0:
            logger.warning("%s; %d event(s) buffered, %d dropped so far", why, len(self._buffer), self.dropped)
