"""``/docs``: the interactive API reference (Swagger UI) served from packaged assets, under a strict CSP.

FastAPI's own ``/docs`` loads Swagger UI from a CDN, with no subresource integrity, on the console's origin:
a CDN compromise would run script next to the console's session, and offline the page is blank. Here the
Swagger UI bundle comes from the ``fastapi-offline`` package's files (Swagger UI 5, which reads OpenAPI
3.1), and the page has no inline script (``docs-init.js`` starts it), so ``script-src 'self'`` holds.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

_ASSETS = {
    "swagger-ui-bundle.js": (resources.files("fastapi_offline") / "static" / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (resources.files("fastapi_offline") / "static" / "swagger-ui.css", "text/css"),
    "docs-init.js": (Path(__file__).parent / "console" / "static" / "docs-init.js", "text/javascript"),
}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Outrider control plane — API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="/openapi.json"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/docs-init.js"></script>
</body>
</html>
"""

#: Swagger UI sets element styles from script (hence 'unsafe-inline' for styles only); no inline script.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


@router.get("/docs")
async def docs_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers=HEADERS)


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    found = _ASSETS.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    path, media_type = found
    return Response(path.read_bytes(), media_type=media_type, headers={**HEADERS, "Cache-Control": "max-age=3600"})
