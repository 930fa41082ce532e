"""``/v1/status``, ``/v1/targets``, ``/v1/autonomy/status``: what the whole system is doing, per Target, and autonomy.

All three come from :mod:`outrider.control_plane.status` (the one function the console and the CLI use too).
They answer 200 even when the store cannot be read: the status then says ``error`` with the reason, because
"the store is unreachable" is the answer, not a failure to give one. ``/v1/targets`` and
``/v1/autonomy/status`` have nothing to say without the store and answer 503 ``store_unavailable``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from fastapi import APIRouter, Depends

from outrider.control_plane import auth, consistency, deps, errors, schemas, status, store

router = APIRouter(tags=["status"], dependencies=[Depends(auth.require_token), consistency.ConsistentRead],
                   responses=errors.responses(422, 503))  # min_position: invalid, or not reached in time


def read(store_: store.Store, scope: store.Scope = store.EVERYTHING) -> status.Inputs:
    """The status inputs from ``store_`` as ``scope`` may see them (its tenants' targets and activity; autonomy
    and the operator's liveness are global); a dead writer counts as an unreachable store."""
    inputs = status.load(store_)
    if inputs.store_error is None and not store_.writer_alive:
        return status.Inputs(store_error="the store writer is not running")
    if scope != store.EVERYTHING:
        def visible(items: list[schemas.StoredEvent]) -> list[schemas.StoredEvent]:
            return [s for s in items if scope.sees(s.event.namespace, s.event.target)]

        inputs = dataclasses.replace(inputs, target_statuses=visible(inputs.target_statuses), recent=visible(inputs.recent))
    return inputs


@router.get(
    "/v1/status",
    response_model=schemas.SystemStatus,
    summary="The system status: healthy, idle, blocked or error, with reason and action",
    responses=errors.responses(401, 422),
)
async def system_status(store_: deps.StoreDep, scope: deps.ScopeDep) -> schemas.SystemStatus:
    inputs = await asyncio.to_thread(read, store_, scope)
    return status.compute(inputs)


@router.get(
    "/v1/targets",
    response_model=list[schemas.TargetState],
    summary="Every Target as the operator last reported it (health, breaker, cooldown, runs, PRs)",
    responses=errors.responses(401, 422, 503),
)
async def targets(store_: deps.StoreDep, scope: deps.ScopeDep) -> list[schemas.TargetState]:
    inputs = await asyncio.to_thread(read, store_, scope)
    if inputs.store_error is not None:
        raise errors.APIError(503, "store_unavailable", inputs.store_error)
    return status.target_states(inputs.target_statuses, datetime.now(UTC))


@router.get(
    "/v1/autonomy/status",
    response_model=schemas.AutonomyStatus,
    summary="Autonomy as the operator last reported it (or a newer autonomy.changed event)",
    responses=errors.responses(401, 503),
)
async def autonomy(store_: deps.StoreDep) -> schemas.AutonomyStatus:
    inputs = await asyncio.to_thread(read, store_)
    if inputs.store_error is not None:
        raise errors.APIError(503, "store_unavailable", inputs.store_error)
    return status.autonomy_status(inputs.heartbeat, inputs.autonomy_changed)
