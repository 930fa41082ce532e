"""Running the control plane as a process: token bootstrap, then uvicorn.

``outrider control-plane`` (and so ``make run``) calls :func:`serve`. When no token is configured it
generates one on first start, keeps it in a file next to the SQLite database (``./outrider.token``,
mode 0600) so later starts reuse it, and prints it with the console URL — the API never runs open.
"""

from __future__ import annotations

import gc
import os
import secrets
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from outrider.control_plane import app as app_module
from outrider.control_plane import read_deadlines, settings, store

TOKEN_FILE_NAME = "outrider.token"
#: Seconds a stop waits for open requests (live streams included) before closing them.
SHUTDOWN_SECONDS = 5


def ensure_token(config: settings.Settings) -> tuple[settings.Settings, str | None]:
    """Settings that name a token file when none is configured, and the token to print (None if configured)."""
    if config.tokens():
        return config, None
    db_file = config.sqlite_path()
    path = config.api_token_file or ((db_file.parent if db_file else Path(".")) / TOKEN_FILE_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("# Outrider control-plane API token, generated on first start\n" + token + "\n")
    os.chmod(path, 0o600)
    config = config.model_copy(update={"api_token_file": path})
    return config, config.tokens()[0]


def uvicorn_config(application: Any, config: settings.Settings, host: str, port: int, **options: Any) -> uvicorn.Config:
    """How uvicorn serves the control plane: read deadlines on every request, a bound on connections, a graceful
    stop. Tests and the demo serve the app with this too, so they run what production runs."""
    options.setdefault("log_level", "warning")
    return uvicorn.Config(
        application, host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        http=read_deadlines.protocol(config.header_timeout_seconds, config.body_timeout_seconds),
        limit_concurrency=config.max_connections, **options,
    )


#: The server's garbage-collection thresholds (see :func:`serve`).
GC_THRESHOLDS = (50_000, 20, 20)
#: How long a thread of the server may hold the interpreter lock while another waits for it (see :func:`serve`).
SWITCH_INTERVAL_SECONDS = 0.002


def serve(host: str, port: int) -> None:
    """Serve the control plane on ``host:port`` until interrupted."""
    config, token = ensure_token(settings.get_settings())
    application = app_module.create_app(config)
    try:  # before serving: a database that cannot be used stops the start here, with its reason and no traceback
        application.state.store.migrate()
    except store.ProjectionsMismatch as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from exc
    url = f"http://{host}:{port}"
    print(f"Outrider control plane on {url}  (console: {url}/, API docs: {url}/docs, store: {config.database_url})", flush=True)
    if token is not None:
        print(f"API token (kept in {config.api_token_file}): {token}", flush=True)
        print(f'  try: curl -H "Authorization: Bearer {token}" {url}/v1/runs', flush=True)
    else:
        print("API tokens: from OUTRIDER_API_TOKENS / OUTRIDER_API_TOKEN_FILE", flush=True)
    uvicorn_server = uvicorn.Server(uvicorn_config(application, config, host, port, log_level="info", access_log=False))
    handle_exit = uvicorn_server.handle_exit

    def stop(sig: int, frame: FrameType | None) -> None:
        # Live streams (GET /v1/events/stream) never end by themselves: end them, or a stop would wait for
        # every console tab to close. SHUTDOWN_SECONDS bounds whatever else is still running.
        application.state.store.end_subscriptions()
        handle_exit(sig, frame)

    uvicorn_server.handle_exit = stop  # type: ignore[method-assign]
    # Everything loaded so far (modules, the app, its routes and models: ~100k objects) lives as long as the
    # process. In the permanent generation, the full collections that allocation-heavy requests trigger (a
    # /metrics scrape builds thousands of objects) no longer traverse it: ~65 ms -> ~1 ms each, which was the
    # p99 of /metrics and the isolated ~80-100 ms maxima of other queries (docs/performance.md).
    gc.collect()
    gc.freeze()
    # A batch of events is a few thousand short-lived objects without cycles: at the default threshold (700) a
    # young-generation collection ran for every request and traversed objects about to be freed anyway.
    gc.set_threshold(*GC_THRESHOLDS)
    # A thread woken by I/O waits for the busy loop to let go of the interpreter lock, up to CPython's 5 ms switch
    # interval by default. When the writer's socket was served by a sender and a receiver thread, 15 of a request's
    # 22 ms in the store were such waits, and 2 ms kept most of the gain without the loop losing the lock so often
    # that its own work slowed (docs/performance.md). The socket is now served in the loop itself
    # (store.writer_process); the interval still bounds how long the thread pool's read routes wait for the lock.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    uvicorn_server.run()
