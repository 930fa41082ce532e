"""``/v1/analytics/trends``, ``/v1/analytics/models`` and ``/v1/graph/*``: figures over time, per model, as a graph.

The routes parse and validate (422 JSON on a bad window, bucket or limit), ask the store for narrow rows
and leave the arithmetic to ``insights`` (pure, tested on its own). docs/api.md defines every figure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from outrider.common import events
from outrider.control_plane import auth, consistency, deps, errors, insights, params, schemas, store

router = APIRouter(tags=["insights"], dependencies=[Depends(auth.require_token), consistency.ConsistentRead],
                   responses=errors.responses(422, 503))  # min_position: invalid, or not reached in time

WindowQuery = Annotated[str, Query(description="How far back: a number and s, m, h, d or w, e.g. 24h, 7d.")]
TargetQuery = Annotated[str | None, Query(description="Only this target.")]


def _bucket(text: str, span: timedelta) -> timedelta:
    try:
        size = params.window(text)
    except errors.APIError as exc:
        raise errors.APIError(422, "invalid_bucket", f"bucket {text!r} is not a number followed by s, m, h, d or w (e.g. 1h)") from exc
    if size > span:
        raise errors.APIError(422, "invalid_bucket", f"bucket {text!r} is longer than the window")
    if span / size > insights.MAX_BUCKETS:
        raise errors.APIError(422, "invalid_bucket", f"window / bucket is more than {insights.MAX_BUCKETS} buckets; choose a larger bucket")
    return size


@router.get(
    "/v1/analytics/trends",
    response_model=schemas.Trends,
    summary="Runs, success rates, tokens, cost per PR and breaker trips per time bucket",
    responses=errors.responses(401, 422, 503),
)
def trends(
    store_: deps.StoreDep,
    scope: deps.ScopeDep,
    window: WindowQuery = "7d",
    bucket: Annotated[str, Query(description="Bucket size, same syntax as window, e.g. 1h, 1d.")] = "1d",
    target: TargetQuery = None,
) -> dict[str, Any]:
    span = params.window(window)
    size = _bucket(bucket, span)
    now = datetime.now(UTC)
    start = insights.bucket_start(now, span, size)
    started, finished = store_.trend_cells(start, int(size.total_seconds()), target, scope)
    trips = store_.event_times(events.EventType.TARGET_BREAKER_TRIPPED, start, target, scope)
    buckets = insights.trends(started, finished, trips, start=start, now=now, bucket=size)
    return {"window": window, "bucket": bucket, "target": target, "since": start, "until": now, "buckets": buckets}


@router.get(
    "/v1/analytics/models",
    response_model=schemas.ModelAnalytics,
    summary="Per provider/model: calls, latency percentiles, errors, tokens, cost, success of the runs that used it",
    responses=errors.responses(401, 422, 503),
)
def models(store_: deps.StoreDep, scope: deps.ScopeDep, window: WindowQuery = "7d", target: TargetQuery = None) -> dict[str, Any]:
    since = datetime.now(UTC) - params.window(window)
    calls = store_.model_facts(since, target, scope)
    return {"window": window, "target": target, "since": since, "models": insights.models(calls)}


LimitQuery = Annotated[int, Query(ge=1, le=10000, description="Most runs to include (oldest first).")]


def _graph(store_: store.Store, window: str, target: str | None, limit: int, scope: store.Scope) -> tuple[datetime, bool, Any]:
    since = datetime.now(UTC) - params.window(window)
    records = store_.graph_runs(since, target, limit + 1, scope)
    return since, len(records) > limit, insights.graph(records[:limit])


@router.get(
    "/v1/graph/nodes",
    response_model=schemas.GraphNodes,
    summary="Nodes of the run graph: targets, tasks, runs, pull requests",
    responses=errors.responses(401, 422, 503),
)
def graph_nodes(store_: deps.StoreDep, scope: deps.ScopeDep, window: WindowQuery = "7d", target: TargetQuery = None, limit: LimitQuery = 1000) -> dict[str, Any]:
    since, truncated, (nodes, _) = _graph(store_, window, target, limit, scope)
    return {"window": window, "since": since, "truncated": truncated, "items": nodes}


@router.get(
    "/v1/graph/edges",
    response_model=schemas.GraphEdges,
    summary="Edges of the run graph: task, run, pr, retry, probe",
    responses=errors.responses(401, 422, 503),
)
def graph_edges(store_: deps.StoreDep, scope: deps.ScopeDep, window: WindowQuery = "7d", target: TargetQuery = None, limit: LimitQuery = 1000) -> dict[str, Any]:
    since, truncated, (_, edges) = _graph(store_, window, target, limit, scope)
    return {"window": window, "since": since, "truncated": truncated, "items": edges}
