"""A store that cannot be read answers 503 ``store_unavailable`` on every read route, through one handler
(app.py) rather than a try/except per route; the server keeps serving what does not need the broken part."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from outrider.control_plane import settings
from outrider.control_plane.store.engine import projections_file
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def test_reads_of_a_broken_store_are_503_with_the_same_body(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    config = make_sqlite_settings()
    server = start_server(config)
    assert server.client.post("/v1/events", json=support.event("run.created", "r1")).status_code == 202
    server.caught_up()
    path = config.sqlite_path()
    assert path is not None
    with sqlite3.connect(projections_file(path)) as conn:  # what a damaged database looks like to the queries: tables gone
        conn.execute("ALTER TABLE runs RENAME TO runs_gone")
        conn.execute("ALTER TABLE rollup_llm_all RENAME TO rollup_llm_all_gone")
    for route in ("/v1/runs", "/v1/runs/summary", "/v1/runs/r1", "/v1/analytics/models", "/v1/graph/nodes"):
        answer = server.client.get(route)
        assert answer.status_code == 503, (route, answer.text)
        assert answer.json()["error"] == "store_unavailable" and "retry" in answer.json()["message"], route
    assert server.client.get("/v1/events", params={"run_id": "r1"}).status_code == 200  # the log itself still reads
    assert server.anonymous.get("/v1/health").status_code == 200
    # The console's pages go through the same handler, as its error page: 503, no traceback, the page says why.
    for page in ("/runs", "/runs/r1", "/models"):  # (trends and errors read run rollups, left intact)
        answer = server.client.get(page)
        assert answer.status_code == 503, (page, answer.text[:300])
        assert "text/html" in answer.headers["content-type"] and "The store is unavailable" in answer.text, page
        assert "Traceback" not in answer.text
