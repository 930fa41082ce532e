"""One shape for every error answer: ``schemas.ErrorBody`` JSON, also for FastAPI's own 404/405/422.

Routes raise :class:`APIError` with a stable code (``unauthorized``, ``invalid_event``, …); the
handlers installed by :func:`install` turn it, Starlette's ``HTTPException`` and FastAPI's
``RequestValidationError`` into the same JSON, so clients parse errors one way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from outrider.control_plane import schemas

#: Stable codes for Starlette's own HTTP errors.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}


class APIError(Exception):
    """An error answer: HTTP status, stable code, human message, optional details and headers."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.detail = detail
        self.headers = headers


def body(error: str, message: str, detail: list[Any] | None = None) -> dict[str, Any]:
    encoded: dict[str, Any] = jsonable_encoder(schemas.ErrorBody(error=error, message=message, detail=detail))
    return encoded


def response(status: int, error: str, message: str, detail: list[Any] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(error, message, detail), status_code=status, headers=headers)


#: What every route may answer besides its success, for /openapi.json.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed JSON or bad request.",
        401: "Missing, wrong, revoked or expired credential.",
        403: "The credential is valid but lacks the right; the body names what was refused.",
        404: "Not found.",
        408: "The request's headers or body did not arrive in time (the connection closes).",
        409: "Conflict; the body says with what.",
        413: "Body or batch too large.",
        415: "Unsupported content type or content encoding.",
        422: "Invalid input; detail lists each problem.",
        429: "Too many: requests or ingest bytes for this credential, live streams, or failed authentications from this address; see Retry-After.",
        503: "The store is unavailable; retry.",
        507: "The namespace is over its storage quota; nothing was stored.",
    }
    if 401 in statuses:  # authenticated: rate limits and failed-authentication limits apply too
        statuses = tuple(sorted({*statuses, 429}))
    return {status: {"model": schemas.ErrorBody, "description": descriptions[status]} for status in statuses}


def for_api_error(exc: APIError) -> JSONResponse:
    """The answer to a route's :class:`APIError`."""
    return response(exc.status, exc.error, exc.message, exc.detail, exc.headers)


def for_unexpected(exc: Exception) -> JSONResponse:
    """The answer to any other exception: a 500 in the same shape (the traceback goes to the server log)."""
    return response(500, "internal_error", f"unexpected error ({type(exc).__name__}); see the server log")


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return for_api_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette still logs the traceback; the client gets the same JSON shape as for every other error.
        return for_unexpected(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"field": ".".join(str(part) for part in err.get("loc", ())), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        return response(422, "invalid_request", "the request's parameters are invalid", detail)
