"""Kubernetes Events (``kubectl describe``) posted in the background, paced, aggregated and bounded.

Why not ``kopf.info``/``kopf.warn``: kopf posts every Event on its own, as soon as it is queued, one POST each.
At 1,000 Runs created at once the ~2,000 Events of the admission burst were still being posted while Jobs
completed, and the Job → Run status p99 tracked how many of them landed in that time (docs/performance.md,
Operator). This module does what client-go's EventRecorder does instead:

- handlers only enqueue (:meth:`Recorder.info` / :meth:`Recorder.warn` never await, never block);
- one poster task sends them through the operator's :class:`kube.Client` (its in-flight limit applies), paced
  by a token bucket — a burst, then a steady rate (``OUTRIDER_KUBE_EVENTS_BURST``/``_QPS``);
- an Event identical (object, type, reason, message) to the last one queued for its object and not posted yet
  is merged into it (``count`` incremented, ``lastTimestamp`` moved); one identical to the last one posted for
  its object within ``OUTRIDER_KUBE_EVENTS_DEDUP_SECONDS`` is not posted again (the RBAC grants ``create`` on
  events only, so a posted Event's count is never patched). Only the *last* Event of the object is compared,
  so a change and its reversal (Ready → Degraded → Ready) are all posted, in order;
- the queue is bounded (``OUTRIDER_KUBE_EVENTS_QUEUE_MAX``); when it is full the oldest Event is dropped and
  counted (``outrider_operator_kube_events_dropped_total``). A failed POST is logged and not retried: Events
  are auxiliary, like kopf's.

The body is the one kopf posts (kopf/_cogs/clients/events.py), plus ``count``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from outrider.operator import kube

logger = logging.getLogger("outrider.operator.kube_events")

MAX_MESSAGE_LENGTH = 1024  # as kopf: longer messages are cut in the middle
CUT_INFIX = "..."
REPORTING_COMPONENT = "kopf"  # the "From" column of `kubectl describe`, unchanged from kopf's posting
EVENT_NAME_PREFIX = "kopf-event-"


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second (of ``clock``); :meth:`delay` never sleeps."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def delay(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


@dataclasses.dataclass
class _Pending:
    ref: dict[str, Any]
    type: str
    reason: str
    message: str
    first: dt.datetime
    last: dt.datetime
    count: int = 1


def object_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The involvedObject, as kopf builds it (bodies.build_object_reference): empty fields left out."""
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name"),
           "uid": meta.get("uid"), "namespace": meta.get("namespace")}
    return {key: value for key, value in ref.items() if value}


def _object_key(ref: Mapping[str, Any]) -> Hashable:
    return ref.get("uid") or (ref.get("apiVersion"), ref.get("kind"), ref.get("namespace"), ref.get("name"))


def _cut(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    prefix = message[:MAX_MESSAGE_LENGTH // 2 - len(CUT_INFIX) // 2]
    suffix = message[-MAX_MESSAGE_LENGTH // 2 + (len(CUT_INFIX) - len(CUT_INFIX) // 2):]
    return f"{prefix}{CUT_INFIX}{suffix}"


def body_for(event: _Pending, *, default_namespace: str, instance: str) -> dict[str, Any]:
    """A core/v1 Event as kopf posts it, with ``count`` (merged duplicates) and the first/last times."""
    namespace = event.ref.get("namespace") or default_namespace
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": EVENT_NAME_PREFIX},
        "action": "Action?",
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": instance,
        "source": {"component": REPORTING_COMPONENT},
        "involvedObject": {**event.ref, "namespace": namespace},
        "count": event.count,
        "firstTimestamp": event.first.isoformat(),
        "lastTimestamp": event.last.isoformat(),
        "eventTime": event.first.isoformat(),
    }


class Recorder:
    """Queue of Kubernetes Events for one operator; :meth:`start` its poster inside the running loop."""

    def __init__(self, client: kube.Client | None, *, queue_max: int = 8192, burst: int = 100, qps: float = 50.0,
                 dedup_seconds: float = 60.0, instance: str = "dev", default_namespace: str = "default",
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.client = client
        self.queue_max = queue_max
        self.dedup_seconds = dedup_seconds
        self.instance = instance
        self.default_namespace = default_namespace
        self.clock = clock
        self.wall = wall
        self.bucket = TokenBucket(qps, burst, clock=clock)
        self.dropped = 0
        self.merged = 0  # duplicates merged into a queued Event or not posted again (deduplicated)
        self.posted = 0
        self.failed = 0
        self._seq = 0
        self._queue: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._last_queued: dict[Hashable, tuple[int, tuple[str, str, str]]] = {}  # object → (seq, identity)
        self._last_posted: collections.OrderedDict[Hashable, tuple[float, tuple[str, str, str]]] = collections.OrderedDict()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- what handlers call (synchronous, never blocks) --------------------------------------------------
    def info(self, obj: Mapping[str, Any], *, reason: str, message: str = "") -> None:
        self.record(obj, type_="Normal", reason=reason, message=message)

    def warn(self, obj: Mapping[str, Any], *, reason: str, message: str = "") -> None:
        self.record(obj, type_="Warning", reason=reason, message=message)

    def record(self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str = "") -> None:
        ref = object_reference(obj)
        if ref.get("apiVersion") == "v1" and ref.get("kind") == "Event":
            return  # as kopf: no Events about Events
        message = _cut(message)
        key = _object_key(ref)
        identity = (type_, reason, message)
        now = self.wall()
        last = self._last_queued.get(key)
        if last is not None and last[1] == identity and last[0] in self._queue:
            pending = self._queue[last[0]]
            pending.count += 1
            pending.last = now
            self.merged += 1
            return
        if last is None or last[0] not in self._queue:
            posted = self._last_posted.get(key)
            if posted is not None and posted[1] == identity and self.clock() - posted[0] < self.dedup_seconds:
                self.merged += 1
                return
        while len(self._queue) >= self.queue_max:
            self._queue.popitem(last=False)
            self.dropped += 1
        self._seq += 1
        self._queue[self._seq] = _Pending(ref, type_, reason, message, now, now)
        self._last_queued[key] = (self._seq, identity)
        if self._wakeup is not None:
            self._wakeup.set()

    # --- the poster ----------------------------------------------------------------------------------
    def take_ready(self) -> _Pending | None:
        """The oldest queued Event if the bucket has a token for it, else None (the poster then waits)."""
        if not self._queue or not self.bucket.take():
            return None
        seq, event = self._queue.popitem(last=False)
        key = _object_key(event.ref)
        identity = (event.type, event.reason, event.message)
        if self._last_queued.get(key, (None,))[0] == seq:
            del self._last_queued[key]
        now = self.clock()
        self._last_posted[key] = (now, identity)
        self._last_posted.move_to_end(key)
        while self._last_posted:  # forget objects whose last Event is older than the window
            oldest_key, (stamp, _) = next(iter(self._last_posted.items()))
            if now - stamp < self.dedup_seconds:
                break
            del self._last_posted[oldest_key]
        return event

    async def _post(self, event: _Pending) -> None:
        assert self.client is not None
        body = body_for(event, default_namespace=self.default_namespace, instance=self.instance)
        try:
            await self.client.create(kube.path("", "v1", "events", body["metadata"]["namespace"]), body)
            self.posted += 1
        except (TimeoutError, kube.ApiError, OSError) as exc:
            self.failed += 1
            logger.warning("cannot post the Event %s/%s about %s %s: %s", event.type, event.reason,
                           event.ref.get("kind"), event.ref.get("name"), exc)

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            event = self.take_ready()
            if event is not None:
                await self._post(event)
                continue
            if self._queue:
                await asyncio.sleep(self.bucket.delay())
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        if self._queue:
            self._wakeup.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outrider-kube-events")

    async def stop(self) -> None:
        """Stop posting; what is still queued is lost (logged with the totals, as a restart would lose it)."""
        logger.info("Kubernetes Events: %d posted, %d merged or deduplicated, %d dropped, %d failed, %d unposted at stop",
                    self.posted, self.merged, self.dropped, self.failed, self.queued)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
