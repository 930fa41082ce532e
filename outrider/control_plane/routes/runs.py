"""``/v1/runs``: run records folded from events — the list, the window summary, and one run by id.

``/v1/runs/summary`` is declared before ``/v1/runs/{run_id}`` so the path is not taken for a run id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from outrider.control_plane import analytics, auth, consistency, deps, errors, params, schemas, store

router = APIRouter(tags=["runs"], dependencies=[Depends(auth.require_token), consistency.ConsistentRead],
                   responses=errors.responses(422, 503))  # min_position: invalid, or not reached in time


@router.get(
    "/v1/runs",
    response_model=schemas.Page[schemas.RunRecord],
    summary="List run records, newest first",
    responses=errors.responses(401, 422, 503),
)
def list_runs(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    target: str | None = None,
    status: schemas.RunStatus | None = None,
    since: Annotated[datetime | None, Query(description="Runs created at or after this (RFC 3339).")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Runs ordered by ``created_at`` descending (ties by run id); follow ``next_cursor`` until it is null."""
    before = None
    if cursor:
        position = params.decode_cursor(cursor, "created_at", "run_id")
        if not isinstance(position["run_id"], str) or len(position["run_id"]) > 253:
            raise errors.APIError(422, "invalid_cursor", "the cursor is not one this API issued")
        before = (params.moment(position["created_at"]), position["run_id"])
    items = store_.list_runs(
        target=target, status=status.value if status else None, since=params.aware(since), before=before, limit=limit + 1,
        scope=scope,
    )
    more = len(items) > limit
    items = items[:limit]
    next_cursor = None
    if more:
        last = items[-1]
        next_cursor = params.encode_cursor({"created_at": last["created_at"].isoformat(), "run_id": last["run_id"]})
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/v1/runs/summary",
    response_model=schemas.RunSummary,
    summary="Runs created in a window: counts, durations, tokens, cost, latest failure",
    responses=errors.responses(401, 422, 503),
)
def summary(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    window: Annotated[str, Query(description="How far back: a number and s, m, h, d or w, e.g. 30m, 24h, 7d.")] = "24h",
    target: Annotated[str | None, Query(description="Only this target's runs.", max_length=253)] = None,
) -> dict[str, Any]:
    since = datetime.now(UTC) - params.window(window)
    facts = store_.summary_facts(since, scope.only_target(target))
    return {**analytics.summary(facts, window, since), "target": target}


@router.get(
    "/v1/runs/{run_id}",
    response_model=schemas.RunRecord,
    summary="One run record",
    responses=errors.responses(401, 404, 409, 422, 503),
)
def get_run(run_id: str, store_: deps.StoreDep, scope: deps.ScopeDep) -> dict[str, Any]:
    """The run ``run_id`` in the caller's namespaces (``?namespace=`` picks one: 409 ``ambiguous_run`` when
    several have a run of that name). A run the caller may not see is 404, as if it did not exist."""
    try:
        found = store_.get_run(run_id, scope)
    except store.AmbiguousRun as exc:
        raise errors.APIError(409, "ambiguous_run", f"{exc}; add ?namespace=", detail=[{"namespace": n} for n in exc.namespaces]) from exc
    if found is None:
        raise errors.APIError(404, "not_found", f"no run {run_id!r}: no event named it")
    return found
