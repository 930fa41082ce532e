"""``GET /v1/projection``: how far the projection has got against the event log (read-your-writes, lag)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends

from outrider.control_plane import auth, deps, errors, schemas

router = APIRouter(tags=["runs"], dependencies=[Depends(auth.require_token)])


@router.get("/v1/projection", response_model=schemas.ProjectionStatus, summary="Projection progress and lag",
            responses=errors.responses(401, 503))
async def projection_status(store_: deps.StoreDep) -> schemas.ProjectionStatus:
    """Where the projector stands: its checkpoint against the log's head, the lag in events and seconds, and who
    holds the projector lease. Run records, summaries, analytics and budgets reflect the log up to ``position``."""
    status = await asyncio.to_thread(store_.projection_status)
    return schemas.ProjectionStatus(**status, stopped=store_.projector_stopped(status))
