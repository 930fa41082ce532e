"""Bearer-token authentication, used as a router-level dependency on every API route but health probes.

Tokens come from ``Settings.tokens()`` (``OUTRIDER_API_TOKENS`` and the token file). Each presented
token is compared with every configured one in constant time (``hmac.compare_digest``), so timing
does not reveal how much of a token matched. With no token configured at all, nothing is accepted:
the API fails closed.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from outrider.control_plane import errors
from outrider.control_plane.principals import Principal, Role

CHALLENGE = {"WWW-Authenticate": "Bearer"}


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


async def require_token(request: Request) -> Principal:
    """Dependency: the caller's :class:`Principal` (also left on ``request.state.principal``); 401
    ``unauthorized`` (with ``WWW-Authenticate: Bearer``) unless a valid credential is presented."""
    tokens: list[str] = request.app.state.tokens
    presented = bearer(request)
    if check(presented, tokens):
        principal = Principal(key_id="token", role=Role.ADMIN)
        request.state.principal = principal
        return principal
    if request.method == "POST" and request.url.path == "/v1/events":
        await request.app.state.store.record_rejection("unauthorized")
    message = "a bearer token is required" if presented is None else "the bearer token is not valid"
    raise errors.APIError(401, "unauthorized", message, headers=CHALLENGE)
