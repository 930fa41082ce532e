"""``/metrics``: the app's Prometheus registry in the text exposition format (unauthenticated, like most exporters)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from outrider.control_plane import consistency

# A scrape never waits; a client that sends Outrider-Min-Position (its own writes) waits for the projection.
router = APIRouter(tags=["metrics"], dependencies=[consistency.ConsistentScrape])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}},
)
def prometheus_metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
