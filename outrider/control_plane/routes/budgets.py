"""``GET /v1/budgets``: LLM spend per rolling window against the budgets the operator enforces.

The spend comes from the store (priced ``run.llm_usage`` events), the limits from the operator's latest
``target.status`` and ``operator.heartbeat`` reports; :mod:`outrider.control_plane.budgets` defines the figures.
The operator asks before admitting a Run of a Target with a budget, passing the limits it enforces now
(``usd_per_hour``/``usd_per_day``), so a limit changed a moment ago is judged right away.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from outrider.control_plane import auth, budgets, deps, errors, schemas, store

# No ConsistentRead: spend is exact under projection lag (the log's tail is added to the rollups), so a
# budget read never has to wait for the projector (docs/concepts/budgets.md).
router = APIRouter(tags=["budgets"], dependencies=[Depends(auth.require_token)])


@router.get(
    "/v1/budgets",
    response_model=schemas.BudgetsResponse,
    summary="LLM spend over 1 h and 24 h rolling windows against the global and per-Target budgets",
    responses=errors.responses(401, 422, 503),
)
async def read_budgets(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    principal: deps.PrincipalDep,
    target: Annotated[str | None, Query(min_length=1, max_length=253, description="Only this Target (and global).")] = None,
    usd_per_hour: Annotated[float | None, Query(ge=0, le=1e9, allow_inf_nan=False,
                                                description="Judge against this hourly limit instead of the reported one "
                                                            "(the target's, or global without ?target=).")] = None,
    usd_per_day: Annotated[float | None, Query(ge=0, le=1e9, allow_inf_nan=False, description="Same, daily.")] = None,
    global_usd_per_hour: Annotated[float | None, Query(ge=0, le=1e9, allow_inf_nan=False,
                                                       description="Judge the global scope against this.")] = None,
    global_usd_per_day: Annotated[float | None, Query(ge=0, le=1e9, allow_inf_nan=False, description="Same, daily.")] = None,
) -> schemas.BudgetsResponse:
    overrides = global_overrides = None
    if usd_per_hour is not None or usd_per_day is not None:
        overrides = budgets.Limits(per_hour=usd_per_hour, per_day=usd_per_day)
    if global_usd_per_hour is not None or global_usd_per_day is not None:
        global_overrides = budgets.Limits(per_hour=global_usd_per_hour, per_day=global_usd_per_day)

    def read() -> schemas.BudgetsResponse:
        with store_.reading() as conn:
            namespace = next(iter(scope.namespaces)) if scope.namespaces is not None and len(scope.namespaces) == 1 else None
            return budgets.read(conn, target=target, namespace=namespace, overrides=overrides, global_overrides=global_overrides,
                                sees=None if scope == store.EVERYTHING else scope.sees, include_global=principal.unbounded)

    return await asyncio.to_thread(read)  # StoreUnavailable: the app's one 503 handler
