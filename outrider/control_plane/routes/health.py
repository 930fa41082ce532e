"""Unauthenticated probes: ``/v1/health`` (the process answers) and ``/readyz`` (the store is usable)."""

from __future__ import annotations

import functools
from importlib import metadata

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from outrider.control_plane import deps, schemas, store

router = APIRouter(tags=["health"])


@functools.cache
def _version() -> str:
    """The installed package's version (looked up once: importlib.metadata scans every distribution)."""
    try:
        return metadata.version("outrider")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get("/v1/health", response_model=schemas.Health, summary="Liveness")
async def health() -> schemas.Health:
    return schemas.Health(status="ok", version=_version())


@router.get(
    "/readyz",
    response_model=schemas.Readiness,
    summary="Readiness: the store answers and its writer runs",
    responses={503: {"model": schemas.Readiness, "description": "The store is not usable."}},
)
def readyz(store_: deps.StoreDep) -> schemas.Readiness | JSONResponse:
    try:
        store_.ping()
    except store.StoreUnavailable as exc:
        body = schemas.Readiness(ready=False, store=store_.dialect, detail=str(exc))
        return JSONResponse(body.model_dump(), status_code=503)
    return schemas.Readiness(ready=True, store=store_.dialect)
