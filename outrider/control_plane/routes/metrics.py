"""``/metrics``: the app's Prometheus registry in the text exposition format.

Open by default, like most exporters; with ``OUTRIDER_METRICS_REQUIRE_KEY`` it needs a credential that reads every
namespace (the metrics span all tenants: namespace, target and model names, counts, spend). docs/metrics.md
says what it reveals.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from outrider.control_plane import auth, consistency, errors

# A scrape never waits; a client that sends Outrider-Min-Position (its own writes) waits for the projection.
router = APIRouter(tags=["metrics"], dependencies=[consistency.ConsistentScrape])


async def _scraper(request: Request) -> None:
    """When keys are required: 401 without one, 403 for a key bounded to some namespaces or targets."""
    if not request.app.state.settings.metrics_require_key:
        return
    principal = await auth.require_reader(request)
    if not principal.unbounded:
        raise auth.forbidden("/metrics spans every namespace; use a key without namespace or target bounds")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}},
               **errors.responses(401, 403)},
)
async def prometheus_metrics(request: Request) -> Response:
    await _scraper(request)
    # The scrape reads the store: in the thread pool, as a sync route would, never on the event loop.
    return Response(await run_in_threadpool(request.app.state.metrics.exposition), media_type=CONTENT_TYPE_LATEST)
