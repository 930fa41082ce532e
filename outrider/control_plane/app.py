"""The FastAPI application factory: ``create_app(settings)`` wires the store, routers, errors and metrics.

The lifespan opens the store (migrating it to the newest schema and starting the group-commit writer)
before the first request and closes it after the last. Everything the routes need hangs on
``app.state``: ``settings``, ``tokens`` (read once at start), ``store`` (see ``store.Store``, which also
offers ``subscribe()`` for live events) and ``metrics`` (the app's own Prometheus registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata

from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from outrider.control_plane import (
    api_docs,
    audit,
    budget_metrics,
    consistency,
    errors,
    keys,
    limits,
    metrics,
    model_metrics,
    quota,
    sessions,
    settings,
    status_metrics,
    store,
)
from outrider.control_plane.console import insights as console_insight_routes
from outrider.control_plane.console import router as console_routes
from outrider.control_plane.routes import analytics as analytics_routes
from outrider.control_plane.routes import budgets as budget_routes
from outrider.control_plane.routes import events as event_routes
from outrider.control_plane.routes import health as health_routes
from outrider.control_plane.routes import insights as insight_routes
from outrider.control_plane.routes import keys as key_routes
from outrider.control_plane.routes import logs as log_routes
from outrider.control_plane.routes import metrics as metrics_routes
from outrider.control_plane.routes import otlp as otlp_routes
from outrider.control_plane.routes import projection as projection_routes
from outrider.control_plane.routes import runs as run_routes
from outrider.control_plane.routes import status as status_routes


def _version() -> str:
    try:
        return metadata.version("outrider")
    except metadata.PackageNotFoundError:
        return "0.0.0"


log = logging.getLogger(__name__)


async def _retention(the_store: store.Store, config: settings.Settings) -> None:
    """Every ``retention_sweep_interval_seconds``: delete events older than ``retention_days`` (see Store.sweep)."""
    assert config.retention_days is not None
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=config.retention_days)
        try:
            deleted = await asyncio.to_thread(the_store.sweep, cutoff)
            if deleted:
                log.info("retention: deleted %d events older than %s", deleted, cutoff.isoformat())
        except store.StoreUnavailable:
            log.warning("retention sweep failed; retrying at the next interval", exc_info=True)
        await asyncio.sleep(config.retention_sweep_interval_seconds)


async def _trust_sweep(app: FastAPI, config: settings.Settings) -> None:
    """Hourly: delete audit entries older than ``audit_retention_days`` and sessions that expired a day ago."""
    while True:
        now = datetime.now(UTC)
        try:
            await asyncio.to_thread(app.state.audit.sweep, now - timedelta(days=config.audit_retention_days))
            await asyncio.to_thread(app.state.sessions.sweep, now - timedelta(days=1))
        except Exception:  # noqa: BLE001 — a failed sweep is retried at the next interval
            log.warning("audit/session sweep failed; retrying at the next interval", exc_info=True)
        await asyncio.sleep(3600)


class ControlPlane(FastAPI):
    """The FastAPI app, except that ``POST /v1/events`` (the hot path: every worker event) goes straight to its
    handler (``routes.events.serve_ingest``) instead of through middleware and the scan of every route. The
    route stays registered, so /openapi.json and /docs describe it; any other request is FastAPI's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.state.throttled:  # empty (nobody throttled): nothing to look up
            for name, value in scope["headers"]:
                if name == b"authorization":
                    try:
                        self.state.throttled.check(value)
                    except errors.APIError as refused:  # over its rate: refused before routing (limits.Throttled)
                        await errors.for_api_error(refused)(scope, receive, send)
                        return
                    break
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            if path == event_routes.INGEST_PATH or (root_path and path == root_path + event_routes.INGEST_PATH):
                scope["app"] = self  # what Starlette sets before routing; the handler reads app.state through it
                await event_routes.serve_ingest(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(config: settings.Settings | None = None) -> FastAPI:
    """A new control-plane app on ``config`` (default: the environment's settings)."""
    config = config or settings.get_settings()
    the_store = store.Store(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_store.open(asyncio.get_running_loop())  # a writer process's socket is served in this loop
        app.state.audit.start()
        trust_sweeper = asyncio.create_task(_trust_sweep(app, config))
        sweeper = asyncio.create_task(_retention(the_store, config)) if config.retention_days is not None else None
        exporting = None
        if config.otlp_endpoint:
            from outrider.control_plane import otel_export  # the optional "otel" extra; only loaded when configured

            exporting = asyncio.create_task(otel_export.watch(the_store, otel_export.otlp_exporter(config.otlp_endpoint)))
        try:
            yield
        finally:
            if exporting is not None:
                exporting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exporting
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            trust_sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trust_sweeper
            await app.state.audit.stop()
            await asyncio.to_thread(the_store.close)  # the loop goes on serving the writer's last answers meanwhile

    app = ControlPlane(
        title="Outrider control plane",
        version=_version(),
        description="Durable event history and run records of autonomous AI-agent runs. See docs/api.md.",
        lifespan=lifespan,
        docs_url=None,  # served by api_docs from packaged assets, not from a CDN
        redoc_url=None,
    )
    app.state.settings = config
    app.state.tokens = config.tokens()
    app.state.operator_tokens = config.operator_token_list()
    app.state.signing_keys = config.signing_keys()
    app.state.run_state_cache = {}
    app.state.last_heartbeat_actor = None
    app.state.store = the_store
    app.state.streams = limits.StreamSlots(config.max_streams, config.max_streams_per_key)
    app.state.auth_failures = limits.AuthFailures(config.auth_failures_per_minute)
    app.state.quota = quota.NamespaceQuota(app.state.store, config.namespace_quota_bytes)
    app.state.throttled = limits.Throttled()
    app.state.request_rate = limits.KeyRate(config.key_requests_per_second, config.key_request_burst, "request rate")
    app.state.ingest_rate = limits.KeyRate(config.key_ingest_bytes_per_second, config.key_ingest_burst_bytes, "ingest bytes rate")
    app.state.keys = keys.KeyStore(the_store.engine, config.key_cache_seconds)
    app.state.sessions = sessions.SessionStore(the_store.engine, config.session_seconds)
    app.state.audit = audit.AuditLog(the_store.engine)
    app.state.metrics = metrics.Metrics(the_store)
    app.state.metrics.registry.register(status_metrics.StatusCollector(the_store))
    app.state.metrics.registry.register(budget_metrics.BudgetCollector(the_store))
    app.state.metrics.registry.register(model_metrics.ModelCollector(the_store))
    errors.install(app)

    @app.exception_handler(store.StoreUnavailable)
    async def _store_unavailable(request: Request, exc: store.StoreUnavailable) -> Response:
        """Every read that the store cannot answer: one 503 for all routes (the ingest fast path answers its own),
        as the console's error page for a console page and as the JSON error body for the API."""
        endpoint = getattr(request.scope.get("route"), "endpoint", None)
        if getattr(endpoint, "__module__", "").startswith(console_routes.__name__.rsplit(".", 1)[0]):
            return console_routes.unavailable(request, exc)
        if isinstance(exc, store.ProjectionLagging):
            return errors.response(503, "projection_lagging", str(exc),
                                   headers={"Retry-After": "1", consistency.PROJECTION_HEADER: str(exc.reached)})
        return errors.response(503, "store_unavailable", f"the store could not be read ({exc}); retry")
    app.include_router(health_routes.router)
    app.include_router(api_docs.router)
    app.include_router(key_routes.router)
    app.include_router(event_routes.router)
    app.include_router(otlp_routes.router)
    app.include_router(run_routes.router)
    app.include_router(projection_routes.router)
    app.include_router(log_routes.router)
    app.include_router(insight_routes.router)
    app.include_router(analytics_routes.router)
    app.include_router(budget_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(status_routes.router)
    app.include_router(console_routes.router)
    app.include_router(console_insight_routes.router)
    return app
