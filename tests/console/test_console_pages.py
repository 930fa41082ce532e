"""Console pages over plain HTTP (no browser): auth cookie flow, redirects, pagination, filters, headers, errors."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import httpx

from tests.console import console_support as support


def signed_in(server: support.Server) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=True)
    response = client.post("/login", data={"token": support.TOKEN, "next": "/"})
    assert response.status_code == 200  # followed the 303 to the dashboard
    return client


def test_login_cookie_and_redirects(server: support.Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for path in ("/", "/runs?status=failed", "/runs/r1"):
            response = anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next=%2F")
        for path in ("/console/partials/status", "/console/partials/activity?seq=1", "/console/events/stream"):
            assert anonymous.get(path).status_code == 401
        assert anonymous.post("/login", data={"token": ""}).status_code == 401
        evil = anonymous.post("/login", data={"token": support.TOKEN, "next": "//evil.example/"})
        assert evil.status_code == 303 and evil.headers["location"] == "/"
        cookie = evil.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    with contextlib.closing(signed_in(server)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        out = client.post("/logout")
        assert out.status_code == 200 and "Sign in" in out.text  # followed to the form
        assert client.get("/", follow_redirects=False).status_code == 303
    # A bearer token works too (curl, scripts).
    response = httpx.get(server.url + "/", headers={"Authorization": f"Bearer {support.TOKEN}"}, timeout=30)
    assert response.status_code == 200 and "Status:" in response.text


def test_history_pagination_filters_and_bad_input(server: support.Server) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    batch = []
    for index in range(30):
        batch += support.run_events(f"run-{index:02d}", "repo-a" if index % 2 else "repo-b",
                                    start=start + timedelta(minutes=index), outcome="failed" if index % 7 == 0 else "succeeded")
    server.post(*batch)
    with contextlib.closing(signed_in(server)) as client:
        first = client.get("/runs")
        assert first.text.count('<th scope="row"><a href="/runs/run-') == 25
        assert "run-29" in first.text and "run-04" not in first.text and "Older runs" in first.text
        older = first.text.split('href="/runs?cursor=')[1].split('"')[0]
        second = client.get(f"/runs?cursor={older}")
        assert second.text.count('<th scope="row"><a href="/runs/run-') == 5
        assert "run-04" in second.text and "run-00" in second.text and "Older runs" not in second.text
        assert "« Newest" in second.text
        failed = client.get("/runs", params={"status": "failed", "target": "repo-b"})
        assert failed.text.count('<th scope="row"><a href="/runs/run-') == 3  # run-00, run-14, run-28
        assert "No runs match these filters." in client.get("/runs", params={"window": "1h"}).text  # all 2-3h old
        assert "run-29" in client.get("/runs", params={"window": "24h"}).text
        bad = client.get("/runs", params={"status": "exploded", "window": "1y", "cursor": "garbage"})
        assert bad.status_code == 200
        for message in ("Unknown status", "Unknown window", "no longer valid"):
            assert message in bad.text
        assert client.get("/runs/not-a-run").status_code == 404


def test_static_files_are_confined(server: support.Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/console/static/console.css").headers["content-type"].startswith("text/css")
        assert client.get("/console/static/console.js").status_code == 200
        for name in ("..%2F__init__.py", "router.py", ".hidden.css", "nope.css"):
            assert client.get(f"/console/static/{name}").status_code == 404


def test_user_data_is_escaped(server: support.Server) -> None:
    evil = "<img src=x onerror=alert(1)>"
    server.post(support.event("run.created", runid=f"run-{evil}", target=evil),
                support.event("run.failed", runid=f"run-{evil}", target=evil,
                              data={"error_type": "Boom", "message": f"{evil} `rm -rf /`", "traceback": evil}),
                support.heartbeat(), support.target_status(evil, health_reason=evil))
    with contextlib.closing(signed_in(server)) as client:
        for path in ("/", "/runs", f"/runs/run-{evil}", "/console/partials/status"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert evil not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text, path


def test_dashboard_targets_show_budget_spend_against_limits(server: support.Server) -> None:
    now = datetime.now(UTC)
    usage = support.event("run.llm_usage", runid="b1", target="repo-a", at=now - timedelta(minutes=5),
                          data={"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.9})
    server.post(support.heartbeat(), usage,
                support.target_status("repo-a", budget_usd_per_hour=1.0, health="Blocked", health_reason="BudgetExceeded"),
                support.target_status("repo-b"))
    with contextlib.closing(signed_in(server)) as client:
        for page in (client.get("/").text, client.get("/console/partials/status").text):
            row_a = page.split('href="/runs?target=repo-a"')[1].split("</tr>")[0]
            assert "1h $0.90/$1.00" in row_a and "badge badge-blocked" in row_a  # no daily limit: not shown
            row_b = page.split('href="/runs?target=repo-b"')[1].split("</tr>")[0]
            assert "No budget; LLM spend in the last 24 h" in row_b and "$0.00/24h" in row_b
            assert "Global budget" not in page  # none configured: nothing said


def test_a_global_budget_that_holds_everything_is_on_the_dashboard(server: support.Server) -> None:
    now = datetime.now(UTC)
    usage = support.event("run.llm_usage", runid="g1", target="repo-a", at=now - timedelta(minutes=5),
                          data={"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.33})
    server.post(support.heartbeat(budget_usd_per_day=0.30), usage,
                support.target_status("repo-a", health="Blocked", health_reason="BudgetExceeded"))
    with contextlib.closing(signed_in(server)) as client:
        page = client.get("/").text
        figure = page.split("<dt>Global budget</dt>")[1].split("</div>")[0]
        assert "24h $0.33/$0.30" in figure and "badge badge-blocked" in figure and "every Run is held" in figure


def test_urls_from_events_become_links_only_when_they_are_http(server: support.Server) -> None:
    """PR and artifact URLs come from agents: ``javascript:``/``data:`` URLs are shown as text, never as links
    (the CSP would stop the script, but the link should not exist)."""
    hostile = ("javascript:alert(document.cookie)", "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>", "//evil.example/x")
    batch = [support.target_status("acme/links", health="Blocked", open_prs=len(hostile) + 1)]
    for number, url in enumerate(hostile, start=1):
        batch.append(support.event("pr.created", runid="links-1", target="acme/links", data={"number": number, "url": url}))
        batch.append(support.event("run.artifact", runid="links-1", target="acme/links",
                                   data={"key": f"a{number}", "kind": "report", "url": url}))
    batch.append(support.event("pr.created", runid="links-1", target="acme/links",
                               data={"number": 99, "url": "https://git.example/acme/links/pull/99"}))
    server.post(*batch)
    with contextlib.closing(signed_in(server)) as client:
        for path in ("/runs/links-1", "/"):
            page = client.get(path).text
            assert 'href="https://git.example/acme/links/pull/99"' in page, path
            for url in hostile:
                assert f'href="{url}' not in page and f"href=\"{url.replace('<', '&lt;')}" not in page, (path, url)
            assert "javascript:alert(document.cookie)" in page  # still shown, as text


def _live_run(server: support.Server, run_id: str) -> datetime:
    start = datetime.now(UTC) - timedelta(minutes=3)
    server.post(
        support.event("run.created", runid=run_id, target="docs-site", at=start),
        support.event("run.started", runid=run_id, target="docs-site", at=start, data={
            "pod": "agent-7f9c", "node": "gpu-node-3", "gpu": "A100", "region": "eu-west-1", "job": "j"}),
        support.event("run.stage.started", runid=run_id, target="docs-site", at=start, data={"stage": "search"}),
    )
    return start


def test_a_running_runs_page_shows_what_it_does_now(server: support.Server) -> None:
    """Stage, progress as reported (iteration of its bound, %, ETA, every other number), elapsed, placement, tail."""
    _live_run(server, "live-1")
    with contextlib.closing(signed_in(server)) as client:
        page = client.get("/runs/live-1").text
        assert 'id="run-live"' in page and "search" in page and "data-elapsed" in page
        assert "A100" in page and "gpu-node-3" in page and "eu-west-1" in page and "agent-7f9c" in page
        assert 'title="The worker has reported no progress for this stage">—' in page  # none yet: shown as missing
        server.post(support.event("run.progress", runid="live-1", target="docs-site", data={
            "stage": "search", "iteration": 3, "max_iterations": 12, "eta_seconds": 540, "best_metric": 0.913,
            "good_nodes": 17, "note": "text is not a figure"}))
        live = client.get("/console/partials/runs/live-1/live", params={"namespace": "default"})
        assert live.status_code == 200
        text = live.text
        assert "iteration 3 of 12" in text and "25.0%" in text and "9m" in text
        assert "best metric" in text and "0.913" in text and "good nodes" in text and "17" in text
        assert "text is not a figure" not in text.split("Latest events")[0]  # only numbers become figures
        assert text.index("run.progress") < text.index("run.stage.started")  # the tail is newest first
        server.post(support.event("run.succeeded", runid="live-1", target="docs-site"))
        assert "data-finished" in client.get("/console/partials/runs/live-1/live").text  # the page reloads then
        done = client.get("/runs/live-1").text
        assert 'id="run-live"' not in done and "A100" in done  # placement stays on the record
        assert client.get("/console/partials/runs/nobody/live").status_code == 404
    anonymous = httpx.get(f"{server.url}/console/partials/runs/live-1/live", timeout=30)
    assert anonymous.status_code == 401


def test_the_runs_list_shows_running_runs_elapsed_and_stage(server: support.Server) -> None:
    _live_run(server, "live-2")
    with contextlib.closing(signed_in(server)) as client:
        row = next(line for line in client.get("/runs").text.split("<tr>") if "live-2" in line)
        assert "data-elapsed" in row and 'title="current stage">search<' in row


def test_a_failed_runs_unfinished_stage_is_not_drawn_running(server: support.Server) -> None:
    start = _live_run(server, "died-1")
    server.post(support.event("run.failed", runid="died-1", target="docs-site", at=start + timedelta(minutes=1),
                              data={"error_type": "OOMKilled", "message": "killed"}))
    with contextlib.closing(signed_in(server)) as client:
        page = client.get("/runs/died-1").text
        timeline = page.split('id="timeline-title"')[1].split("</section>")[0]
        assert "unfinished" in timeline and ">running<" not in timeline and "bar-open" not in timeline


def test_a_stalled_run_is_marked_on_its_page_and_in_the_history(server: support.Server) -> None:
    start = _live_run(server, "hushed")
    server.post(support.event("run.stalled", runid="hushed", target="docs-site", source="/outrider/operator",
                              at=start + timedelta(minutes=2), data={"idle_seconds": 120, "timeout_seconds": 60}))
    with contextlib.closing(signed_in(server)) as client:
        title = client.get("/runs/hushed").text.split('id="run-title"')[1].split("</h1>")[0]
        assert ">stalled<" in title
        row = next(line for line in client.get("/runs").text.split("<tr>") if "hushed" in line)
        assert ">stalled<" in row
