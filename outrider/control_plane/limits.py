"""Limits on what one client can hold or try: request rate and ingest bytes per key, live streams, and failed
authentications.

- **Rates per key.** Every authenticated request takes one token from its credential's request bucket
  (``key_requests_per_second`` sustained, ``key_request_burst`` at once); every ingest body takes its size
  from the credential's byte bucket (``key_ingest_bytes_per_second``, ``key_ingest_burst_bytes``). An empty
  bucket answers 429 with ``Retry-After`` (when it will hold enough again) and nothing of the request is
  stored. 0 turns a rate off. One busy key cannot slow the others: each has its own buckets.

- **Streams.** Every SSE stream holds a subscription and a connection for as long as the client stays. At most
  ``max_streams`` are open in all and ``max_streams_per_key`` per credential; beyond, 429 with ``Retry-After``.
- **Failed authentications.** More than ``auth_failures_per_minute`` failed authentications from one client
  address within a minute answer 429 (``Retry-After``) for the rest of that minute, valid credential or not:
  guessing keys gets slow, and the refusals are logged once per address and minute, not once per request.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

from outrider.control_plane import errors

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60.0
TRACKED_ADDRESSES = 10_000


def too_many(message: str, retry_after: int) -> errors.APIError:
    return errors.APIError(429, "too_many_requests", message, headers={"Retry-After": str(max(1, retry_after))})


class StreamSlots:
    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.open: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def take(self, key_id: str) -> None:
        """Reserve a stream for ``key_id``; 429 when the server or the key has as many as allowed."""
        with self._lock:
            if sum(self.open.values()) >= self.total:
                raise too_many(f"the server has {self.total} live streams open, its limit; retry later", 10)
            if self.open[key_id] >= self.per_key:
                raise too_many(f"this credential has {self.per_key} live streams open, its limit; close one", 10)
            self.open[key_id] += 1

    def give(self, key_id: str) -> None:
        with self._lock:
            self.open[key_id] -= 1
            if self.open[key_id] <= 0:
                del self.open[key_id]


class AuthFailures:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[float, int, bool]] = {}  # address → (window start, failures, logged)
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """429 while ``address`` is over its failures for the current minute."""
        with self._lock:
            found = self._windows.get(address)
        if found is None:
            return
        start, failures, _ = found
        left = start + WINDOW_SECONDS - time.monotonic()
        if left > 0 and failures > self.per_minute:
            raise too_many("too many failed authentications from this address; wait before retrying", int(left) + 1)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            start, failures, logged = self._windows.get(address, (now, 0, False))
            if now - start > WINDOW_SECONDS:
                start, failures, logged = now, 0, False
            failures += 1
            if failures > self.per_minute and not logged:
                log.warning("auth: %d failed authentications from %s within a minute; refusing it until the minute ends",
                            failures, address)
                logged = True
            if len(self._windows) >= TRACKED_ADDRESSES and address not in self._windows:
                self._windows.clear()
            self._windows[address] = (start, failures, logged)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class KeyRate:
    """Token buckets, one per credential: ``rate`` units a second sustained, ``burst`` at once.

    A charge is allowed while the bucket holds anything and may take it below zero (one ingest body can be larger
    than what is left): the debt is paid back before the next charge, so the sustained rate holds exactly.
    """

    def __init__(self, rate: float, burst: float, what: str) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.what = what
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, amount: float = 1.0) -> None:
        """Charge ``amount`` to ``key_id``; 429 (with when to retry) while its bucket is empty."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                if len(self._buckets) >= TRACKED_ADDRESSES:
                    self._forget_full(now)
                bucket = self._buckets[key_id] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens <= 0:
                wait = math.ceil((1.0 - bucket.tokens) / self.rate)
                refused = too_many(f"this credential is over its {self.what}; retry after {wait} s", wait)
                refused.until = now + (1e-3 - bucket.tokens) / self.rate  # type: ignore[attr-defined]
                raise refused
            bucket.tokens -= amount

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (idle keys): forgetting them changes nothing."""
        for key_id, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[key_id]


class Throttled:
    """Credentials refused for their request rate, by a digest of the secret presented, until their bucket refills.

    Why: a client retrying in a tight loop once it gets 429 costs the server a full request (routing,
    authentication) per refusal, and the other clients wait behind those. While a credential is known to be
    over its rate, its requests are refused before routing (``app.ControlPlane``), with the same answer the full
    path would give. Only authenticated credentials get here, so guessed tokens never fill it.
    """

    def __init__(self) -> None:
        self._until: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    @staticmethod
    def digest(secret: bytes) -> bytes:
        return hashlib.blake2b(secret, digest_size=16).digest()

    def remember(self, secret: str, until: float) -> None:
        if len(self._until) >= TRACKED_ADDRESSES:
            now = time.monotonic()
            self._until = {k: v for k, v in self._until.items() if v > now}
        self._until[self.digest(secret.encode())] = until

    def check(self, authorization: bytes) -> None:
        """429 while the credential in this ``Authorization`` header value is known to be over its rate."""
        if not self._until:
            return
        scheme, _, secret = authorization.partition(b" ")
        until = self._until.get(self.digest(secret.strip()))
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            self._until.pop(self.digest(secret.strip()), None)
            return
        wait = math.ceil(left)
        raise too_many(f"this credential is over its request rate; retry after {wait} s", wait)
