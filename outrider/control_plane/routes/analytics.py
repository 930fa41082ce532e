"""``/v1/analytics/errors``: failures in a window grouped by target, error type or stage, with rates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from outrider.control_plane import analytics, auth, consistency, deps, errors, params, schemas

router = APIRouter(tags=["analytics"], dependencies=[Depends(auth.require_token), consistency.ConsistentRead],
                   responses=errors.responses(422, 503))  # min_position: invalid, or not reached in time


@router.get(
    "/v1/analytics/errors",
    response_model=schemas.ErrorAnalytics,
    summary="Failures of runs created in a window, grouped",
    responses=errors.responses(401, 422, 503),
)
def error_analytics(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    window: Annotated[str, Query(description="How far back: e.g. 30m, 24h, 7d.")] = "24h",
    by: Annotated[Literal["target", "error_type", "stage"], Query(description="What to group failures by.")] = "target",
) -> dict[str, Any]:
    """Counts and rates; every rate is null when its denominator is 0."""
    since = datetime.now(UTC) - params.window(window)
    groups = store_.finished_groups(since, analytics.GROUP_COLUMNS[by], scope)
    return analytics.errors(groups, window, since, by)
