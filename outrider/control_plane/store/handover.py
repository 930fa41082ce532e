"""What the store hands its writer (a request's events, a count of refused events, a write probe), and how the
futures of those requests are settled when the writer answers.

Shared by the writer's group commit (``store.Store``) and the server's side of a writer process
(``store.remote_writer``), so that neither imports the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

from outrider.common import events
from outrider.control_plane.store.log_format import Encoded

#: What an append answers each request: (accepted, duplicates, log position after the commit).
Appended = tuple[int, int, int]


@dataclasses.dataclass
class Submission:
    events: Sequence[events.CloudEvent] | Encoded
    #: A concurrent future (:meth:`Store.submit`) or an event loop's future (:meth:`Store.submit_async`).
    future: concurrent.futures.Future[Appended] | asyncio.Future[Appended]


@dataclasses.dataclass
class Rejection:
    reason: str
    count: int
    future: concurrent.futures.Future[Appended]


@dataclasses.dataclass
class Probe:
    """A tiny real write (one row of ``store_probe``), to learn whether commits work again."""

    future: concurrent.futures.Future[Appended]


#: Tells the writer loop to finish.
STOP = object()


def settle(future: concurrent.futures.Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    """Resolve a request's future unless the request gave up waiting (cancelled it) meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


def answer_in_loop(answers: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """Settle a loop's futures (runs in that loop); a request that gave up waiting cancelled its future."""
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def resolve(answers: list[tuple[Any, Any]], running: asyncio.AbstractEventLoop | None = None) -> None:
    """Settle requests' futures with a result or an exception: concurrent futures at once, event-loop futures
    with ONE call into each loop for the whole group (a wake-up per request costs the loop more than the
    request's own work when single events arrive from many clients). ``running``: the caller's own running loop,
    whose futures are settled at once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for future, outcome in answers:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        elif isinstance(outcome, BaseException):
            settle(future, exception=outcome)
        else:
            settle(future, result=outcome)
    for loop, items in by_loop.items():
        if loop is running:
            answer_in_loop(items)
            continue
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(answer_in_loop, items)
