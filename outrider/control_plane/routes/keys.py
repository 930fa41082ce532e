"""``/v1/keys`` (create, list, revoke API keys) and ``/v1/audit`` (the audit log): admin only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from outrider.control_plane import auth, errors, keys, params, schemas
from outrider.control_plane.principals import Principal, Role

router = APIRouter(tags=["keys"])
AdminDep = Annotated[Principal, Depends(auth.require_admin)]


def _info(record: keys.KeyRecord) -> dict[str, Any]:
    return {
        "id": record.key_id, "name": record.name, "role": record.role.value, "namespaces": record.namespaces,
        "targets": record.targets, "created_at": record.created_at, "created_by": record.created_by,
        "expires_at": record.expires_at, "revoked_at": record.revoked_at,
    }


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/v1/keys", status_code=201, response_model=schemas.KeyCreated, summary="Create an API key (admin)",
             responses=errors.responses(400, 401, 403, 422))
async def create_key(body: schemas.KeyCreate, request: Request, principal: AdminDep) -> dict[str, Any]:
    """The new key with its secret, shown this once (only its hash is stored)."""
    expires_at = datetime.now(UTC) + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    store: keys.KeyStore = request.app.state.keys
    record, secret = await asyncio.to_thread(
        store.create, Role(body.role.value), name=body.name, namespaces=body.namespaces, targets=body.targets,
        expires_at=expires_at, created_by=principal.key_id)
    request.app.state.audit.record("key.created", "ok", principal, object=record.key_id, remote=_remote(request), detail={
        "role": record.role.value, "name": record.name, "namespaces": record.namespaces, "targets": record.targets,
        "expires_at": expires_at.isoformat() if expires_at else None})
    return {**_info(record), "secret": secret}


@router.get("/v1/keys", response_model=list[schemas.KeyInfo], summary="List API keys without their secrets (admin)",
            responses=errors.responses(401, 403))
async def list_keys(request: Request, _: AdminDep) -> list[dict[str, Any]]:
    store: keys.KeyStore = request.app.state.keys
    return [_info(record) for record in await asyncio.to_thread(store.list)]


@router.delete("/v1/keys/{key_id}", response_model=schemas.KeyInfo, summary="Revoke an API key at once (admin)",
               responses=errors.responses(401, 403, 404))
async def revoke_key(key_id: str, request: Request, principal: AdminDep) -> dict[str, Any]:
    """Revoked keys answer 401 from now on (on other replicas within ``key_cache_seconds``); the console
    sessions the key opened end at once."""
    store: keys.KeyStore = request.app.state.keys
    record = await asyncio.to_thread(store.revoke, key_id[:64])
    if record is None:
        raise errors.APIError(404, "not_found", f"no key {key_id!r}")
    ended = await asyncio.to_thread(request.app.state.sessions.end_for_key, record.key_id)
    request.app.state.audit.record("key.revoked", "ok", principal, object=record.key_id, remote=_remote(request),
                                   detail={"sessions_ended": ended})
    return _info(record)


@router.get("/v1/audit", response_model=schemas.Page[schemas.AuditEntry], summary="The audit log, oldest first (admin)",
            responses=errors.responses(401, 403, 422))
async def read_audit(
    request: Request,
    _: AdminDep,
    action: Annotated[str | None, Query(max_length=64, description="e.g. key.created, write.refused, login.failed.")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="A key id, 'token', 'operator-token' or run:<ns>/<run>.")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    log = request.app.state.audit
    await asyncio.to_thread(log.flush)  # what was recorded before this request is in the answer
    after = params.seq(params.decode_cursor(cursor, "seq")["seq"]) if cursor else 0
    items = await asyncio.to_thread(log.read, after=after, limit=limit + 1, action=action, actor=actor)
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": params.encode_cursor({"seq": items[-1]["seq"]}) if more else None}
