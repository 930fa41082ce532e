"""Typed FastAPI dependencies shared by the routers: the store and the settings of the running app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from outrider.control_plane import auth, settings, store
from outrider.control_plane.principals import Principal


# ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a worker thread, and two thread hops per
# request cost more than everything else a small ingestion request does.
async def get_store(request: Request) -> store.Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def get_settings(request: Request) -> settings.Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


StoreDep = Annotated[store.Store, Depends(get_store)]
SettingsDep = Annotated[settings.Settings, Depends(get_settings)]

#: The authenticated caller (401 without a valid credential): reads filter by its namespaces and targets.
PrincipalDep = Annotated[Principal, Depends(auth.require_token)]


async def get_scope(
    principal: PrincipalDep,
    namespace: Annotated[str | None, Query(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                           description="Only this namespace (tenant).")] = None,
) -> store.Scope:
    """What the caller may see (its key's namespaces and targets), narrowed by ``?namespace=``."""
    return store.Scope.of(principal, namespace)


ScopeDep = Annotated[store.Scope, Depends(get_scope)]
