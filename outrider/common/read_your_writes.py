"""Read-your-writes for HTTP clients of the control plane (worker SDK, CLI, tests, your own scripts).

The control plane answers each ingestion with the event log's position after its commit (header
``Outrider-Position``); reads of projected data (runs, summaries, analytics, budgets) wait for a position
given as ``Outrider-Min-Position``. :class:`Session` remembers the highest position this client was answered
and sends it with every later request, so a client sees its own writes without any other change::

    session = Session()
    client = httpx.Client(base_url=url, event_hooks=session.hooks())
"""

from __future__ import annotations

import threading
from typing import Any

POSITION_HEADER = "Outrider-Position"
MIN_POSITION_HEADER = "Outrider-Min-Position"


class Session:
    """The highest log position a client's writes reached; thread-safe; see the module docstring."""

    def __init__(self) -> None:
        self.position = 0
        self._lock = threading.Lock()

    def saw(self, value: str | None) -> None:
        """Remember a position from an ``Outrider-Position`` header (ignores anything that is not one)."""
        if value is None or not value.isdigit():
            return
        with self._lock:
            self.position = max(self.position, int(value))

    def on_request(self, request: Any) -> None:
        if self.position and request.method in ("GET", "HEAD") and MIN_POSITION_HEADER not in request.headers:
            request.headers[MIN_POSITION_HEADER] = str(self.position)

    def on_response(self, response: Any) -> None:
        self.saw(response.headers.get(POSITION_HEADER))

    async def on_request_async(self, request: Any) -> None:
        self.on_request(request)

    async def on_response_async(self, response: Any) -> None:
        self.on_response(response)

    def hooks(self) -> dict[str, list[Any]]:
        """``event_hooks`` for an ``httpx.Client``."""
        return {"request": [self.on_request], "response": [self.on_response]}

    def async_hooks(self) -> dict[str, list[Any]]:
        """``event_hooks`` for an ``httpx.AsyncClient``."""
        return {"request": [self.on_request_async], "response": [self.on_response_async]}
