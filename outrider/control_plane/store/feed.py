"""Live updates: each stream client's bounded buffer of committed events (the publish/subscribe API of the store's
module docstring). A subscriber that falls behind is dropped, never waited for."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from outrider.control_plane.store.errors import SubscriberDropped, SubscriptionEnded


class Subscription:
    """One live-stream client's bounded buffer of committed events; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_events: int) -> None:
        self.loop = loop
        self.max_events = max_events
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.dropped = False
        self.ended = False
        self._wake = asyncio.Event()

    def _end(self) -> None:  # runs in the subscriber's loop
        self.ended = True
        self._wake.set()

    def _offer(self, items: list[dict[str, Any]]) -> None:  # runs in the subscriber's loop
        if self.dropped:
            return
        if len(self.buffer) + len(items) > self.max_events:
            self.dropped = True
            self.buffer.clear()
        else:
            self.buffer.extend(items)
        self._wake.set()

    async def next(self, timeout: float) -> list[dict[str, Any]]:
        """The events committed since the last call; [] after ``timeout`` seconds without any."""
        if not self.buffer and not self.dropped and not self.ended:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        if self.dropped:
            raise SubscriberDropped
        if self.ended and not self.buffer:
            raise SubscriptionEnded
        items = list(self.buffer)
        self.buffer.clear()
        return items
