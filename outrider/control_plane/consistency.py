"""Read-your-writes over a projection that may lag the log.

Ingestion answers the log position of what it committed (``position``, header ``Outrider-Position``). A read
that must see those events passes it back as ``?min_position=`` or the ``Outrider-Min-Position`` header: the
read then waits (at most ``read_wait_max_seconds``) until the projection has reached it, or answers
503 ``projection_lagging`` with Retry-After. Every read of projected data answers the position the
projection had reached (``Outrider-Projection-Position``), so a client can always tell how fresh it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response

from outrider.common import read_your_writes
from outrider.control_plane import errors, params, store

POSITION_HEADER = read_your_writes.POSITION_HEADER
MIN_POSITION_HEADER = read_your_writes.MIN_POSITION_HEADER
PROJECTION_HEADER = "Outrider-Projection-Position"
#: How often a waiting read looks at the checkpoint (seconds).
POLL_SECONDS = 0.01


async def wait_for(store_: store.Store, position: int, timeout: float) -> int:
    """Wait until the projection reached ``position``; the position it has reached (below ``position`` after
    ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        reached = await asyncio.to_thread(store_.projected_position)
        if reached >= position or time.monotonic() >= deadline:
            return reached
        await asyncio.sleep(POLL_SECONDS)


async def consistent_read(
    request: Request,
    response: Response,
    min_position: Annotated[int | None, Query(ge=0, le=params.MAX_SEQ, description=(
        "Wait until the projection has reached this log position (from an ingestion answer) before reading; "
        "503 projection_lagging if it does not within read_wait_max_seconds."))] = None,
    header: Annotated[int | None, Header(alias=MIN_POSITION_HEADER, ge=0, le=params.MAX_SEQ, include_in_schema=False)] = None,
) -> None:
    """The dependency every read of projected data takes (runs, summaries, analytics, budgets, the console)."""
    wanted = max(min_position or 0, header or 0)
    store_: store.Store = request.app.state.store
    try:
        if wanted:
            head = await asyncio.to_thread(store_.log_head)
            if wanted > head:  # no answer to an ingestion names it: waiting could never end
                raise errors.APIError(422, "invalid_position",
                                      f"log position {wanted} is beyond the end of the event log ({head}); pass a "
                                      "position an ingestion answered")
            reached = await wait_for(store_, wanted, request.app.state.settings.read_wait_max_seconds)
            if reached < wanted:
                raise errors.APIError(
                    503, "projection_lagging",
                    f"the projection has reached log position {reached}, not yet {wanted}; retry shortly",
                    headers={"Retry-After": "1", PROJECTION_HEADER: str(reached)},
                )
        else:
            reached = await asyncio.to_thread(store_.projected_position)
    except store.StoreUnavailable as exc:
        raise errors.APIError(503, "store_unavailable", str(exc)) from exc
    response.headers[PROJECTION_HEADER] = str(reached)


async def consistent_scrape(
    request: Request,
    response: Response,
    header: Annotated[int | None, Header(alias=MIN_POSITION_HEADER, ge=0, le=params.MAX_SEQ, include_in_schema=False)] = None,
) -> None:
    """For ``/metrics``: only the header (a scrape never sends it; a client checking its own writes may)."""
    await consistent_read(request, response, None, header)


ConsistentRead = Depends(consistent_read)
ConsistentScrape = Depends(consistent_scrape)
