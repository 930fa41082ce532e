"""Authentication: a bearer credential becomes a :class:`Principal`; routes then ask for the right they need.

Credentials, tried in this order:

- the legacy ``OUTRIDER_API_TOKENS`` / token file: **admin** (``make run`` prints one; the chart's admin Secret);
- ``OUTRIDER_OPERATOR_TOKENS``: **operator** (the chart gives the operator its own Secret);
- ``otk_…`` API keys (``keys.py``): their role and tenant bounds;
- ``ort1.…`` per-run credentials (``outrider.common.credentials``): **run**, for one run, until it finished
  plus ``run_credential_grace_seconds``.

Secrets are compared in constant time (``hmac.compare_digest``). With nothing configured, nothing is accepted:
the API fails closed. No valid credential: 401 ``unauthorized``; valid but without the right: 403 ``forbidden``
with a message naming what was refused.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request

from outrider.common import credentials
from outrider.control_plane import errors, keys
from outrider.control_plane.principals import Principal, Role

CHALLENGE = {"WWW-Authenticate": "Bearer"}
ADMIN_TOKEN = Principal(key_id="token", role=Role.ADMIN)
OPERATOR_TOKEN = Principal(key_id="operator-token", role=Role.OPERATOR)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
#: How long whether a run has finished is remembered per run credential (seconds): one read, not one per request.
RUN_STATE_CACHE_SECONDS = 2.0


def check(presented: str | None, tokens: list[str]) -> bool:
    """Whether ``presented`` equals one of ``tokens`` (constant time per comparison, all compared)."""
    if not presented:
        return False
    given = presented.encode("utf-8")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode("utf-8"))
    return matched


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def unauthorized(message: str) -> errors.APIError:
    return errors.APIError(401, "unauthorized", message, headers=CHALLENGE)


def forbidden(message: str) -> errors.APIError:
    return errors.APIError(403, "forbidden", message)


async def _run_principal(state: Any, presented: str) -> Principal:
    """The principal of a run credential; 401 naming why it is not (or no longer) valid."""
    signing: list[bytes] = state.signing_keys
    if not signing:
        raise unauthorized("run credentials are not accepted: this control plane has no run signing key")
    try:
        claims = credentials.verify(signing, presented)
    except credentials.InvalidCredential as exc:
        raise unauthorized(f"the run credential is not valid ({exc})") from exc
    finished = await _finished_at(state, claims.namespace, claims.run)
    grace = timedelta(seconds=state.settings.run_credential_grace_seconds)
    if finished is not None and datetime.now(UTC) > finished + grace:
        raise unauthorized(f"the run credential has ended: run {claims.run!r} finished")
    return Principal(
        key_id=f"run:{claims.namespace}/{claims.run}", role=Role.RUN, namespaces=frozenset({claims.namespace}),
        targets=frozenset({claims.target}), run=claims.run, expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )


async def _finished_at(state: Any, namespace: str, run: str) -> datetime | None:
    """When the run's record says it finished (None: not finished, or no record yet), cached briefly."""
    cache: dict[tuple[str, str], tuple[float, datetime | None]] = state.run_state_cache
    now = time.monotonic()
    hit = cache.get((namespace, run))
    if hit is not None and now - hit[0] < RUN_STATE_CACHE_SECONDS:
        return hit[1]
    record = await asyncio.to_thread(state.store.get_run, run)
    finished = None
    if record is not None and record.get("status") in TERMINAL and record.get("completed_at") is not None:
        completed = record["completed_at"]
        finished = completed if isinstance(completed, datetime) else datetime.fromisoformat(str(completed))
        finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
    if len(cache) > 10_000:
        cache.clear()
    cache[(namespace, run)] = (now, finished)
    return finished


async def resolve(state: Any, presented: str) -> Principal | None:
    """The principal a presented secret stands for; None when it stands for nobody (401s raise on their own)."""
    if check(presented, state.tokens):
        return ADMIN_TOKEN
    if check(presented, state.operator_tokens):
        return OPERATOR_TOKEN
    if keys.looks_like_key(presented):
        key_store: keys.KeyStore = state.keys
        return await asyncio.to_thread(key_store.resolve, presented) if key_store.needs_read(presented) else key_store.resolve(presented)
    if credentials.looks_like_run_token(presented):
        return await _run_principal(state, presented)
    return None


async def authenticate(request: Request) -> Principal:
    """The caller's principal (also left on ``request.state.principal``); 401 without a valid credential, 429
    while the client's address has failed too often this minute (``limits.AuthFailures``) or the credential is over
    its request rate (``limits.KeyRate``)."""
    failures = request.app.state.auth_failures
    address = request.client.host if request.client else "?"
    failures.check(address)
    presented = bearer(request)
    if presented is None:
        raise unauthorized("a bearer token is required")
    try:
        principal = await resolve(request.app.state, presented)
    except errors.APIError:
        failures.failed(address)
        raise
    if principal is None:
        failures.failed(address)
        raise unauthorized("the bearer token is not valid (unknown, revoked or expired)")
    try:
        request.app.state.request_rate.take(principal.key_id)  # 429 while this credential is over its request rate
    except errors.APIError as refused:
        request.app.state.throttled.remember(presented, refused.until)  # type: ignore[attr-defined]
        raise
    request.state.principal = principal
    return principal


async def require_reader(request: Request) -> Principal:
    """Dependency of every read route: a principal that may read (roles read, operator, admin)."""
    principal = await authenticate(request)
    if not principal.can_read:
        raise forbidden(f"role {principal.role.value} may not read; use a key with role read")
    return principal


async def require_writer(request: Request) -> Principal:
    """Dependency of the ingest routes: a principal that may write events (what, is checked per event)."""
    principal = await authenticate(request)
    if not principal.can_write:
        raise forbidden(f"role {principal.role.value} may not write events; use a key with role ingest")
    return principal


async def require_admin(request: Request) -> Principal:
    """Dependency of key management and the audit log."""
    principal = await authenticate(request)
    if not principal.is_admin:
        raise forbidden(f"role {principal.role.value} may not manage keys or read the audit log; admin only")
    return principal


#: The name the read routers have always used.
require_token = require_reader
