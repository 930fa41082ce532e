"""The console in a real headless Chromium (Debian's, driven by Playwright) against a real control plane.

Covers: login form → dashboard, a run posted during the test appearing without reload (SSE), Run History
with filters, Run detail, labels on every control and text contrast (WCAG AA) on every page. A screenshot of
each page is written under the test's output folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing, require_executable
from tests.console import console_support as support

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]

#: Every visible text node's colour against its effective background; returns the failures (WCAG AA).
CONTRAST_JS = """
() => {
  function rgba(text) {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(',').map(s => parseFloat(s));
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function lum(c) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  }
  function background(el) {
    for (let node = el; node; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c[3] > 0.5) return c;
    }
    return [255, 255, 255, 1];
  }
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!el || seen.has(el) || !node.textContent.trim()) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none' || box.width === 0 || box.left < -100) continue;
    const fg = rgba(style.color), bg = background(el);
    const a = lum(fg), b = lum(bg);
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const needed = (size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5;
    if (ratio < needed) failures.push({text: node.textContent.trim().slice(0, 40), ratio: ratio.toFixed(2), needed});
  }
  return failures;
}
"""

#: Controls without an accessible name (label[for], wrapping label, aria-label or aria-labelledby).
UNLABELLED_JS = """
() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button')).filter(el => {
  if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
  if (el.tagName === 'BUTTON') return !el.textContent.trim();
  if (el.id && document.querySelector('label[for="' + el.id + '"]')) return false;
  return !el.closest('label');
}).map(el => el.outerHTML.slice(0, 80))
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = require_executable("chromium", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in the test extra
        missing("playwright", "pip install playwright (test extra)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _seed(server: support.Server) -> None:
    now = datetime.now(UTC)
    server.post(
        support.heartbeat(enabled=True, period=30, autonomy_mode="hold"),
        support.target_status("payments-api", health="Blocked", health_reason="CircuitOpen", breaker_state="Open",
                              consecutive_failures=2, trips=1, pending_runs=3, open_prs=1,
                              cooldown_until=(now + timedelta(minutes=30)).isoformat()),
        support.target_status("docs-site", active_runs=1, max_concurrent_runs=2, open_prs=1),
        *support.run_events("run-ok-1", "docs-site", prs=1, start=now - timedelta(hours=2)),
        *support.run_events("run-ok-2", "docs-site", start=now - timedelta(hours=1), cost=None),
        *support.run_events("run-fail-1", "payments-api", outcome="failed", start=now - timedelta(minutes=45)),
        *support.run_events("run-fail-2", "payments-api", outcome="failed", start=now - timedelta(minutes=30)),
        *support.run_events("run-live-0", "docs-site", outcome="running", start=now - timedelta(minutes=2)),
        support.event("autonomy.changed", source="/operator", data={"enabled": True, "reason": "maintenance over"},
                      at=now - timedelta(hours=3)),
    )


#: Fact-card rows per ``dl.figures``: how many cards each row holds (by their top edge).
CARD_ROWS_JS = """
() => Array.from(document.querySelectorAll('dl.figures')).map(list => {
  const rows = {};
  for (const card of list.children) { const top = Math.round(card.getBoundingClientRect().top); rows[top] = (rows[top] || 0) + 1; }
  return Object.keys(rows).sort((a, b) => a - b).map(top => rows[top]);
})
"""


def _sign_in(page: Any, server: support.Server) -> None:
    """The login form with the valid token, landing on the dashboard (the login flow itself is tested above)."""
    page.goto(server.url + "/login")
    page.get_by_label("API token").fill(support.TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/")


def _check_page(page: Any, output_dir: Path, name: str) -> None:
    page.screenshot(path=str(output_dir / f"{name}.png"), full_page=True)
    assert page.evaluate(UNLABELLED_JS) == [], f"{name}: controls without labels"
    for rows in page.evaluate(CARD_ROWS_JS):  # balanced fact cards: never one card alone under a full row
        assert max(rows) - min(rows) <= 1, f"{name}: fact cards in rows of {rows}"
    assert page.evaluate(CONTRAST_JS) == [], f"{name}: text below WCAG AA contrast"


def test_console_pages_live_updates_and_accessibility(server: support.Server, browser: Any, output_dir: Path) -> None:
    _seed(server)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Login: the dashboard redirects to the form; a wrong token is refused; the right one sets the cookie.
    page.goto(server.url + "/")
    assert "/login" in page.url
    _check_page(page, output_dir, "login")
    page.get_by_label("API token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That token is not valid."
    page.get_by_label("API token").fill(support.TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/")
    cookie = next(c for c in context.cookies() if c["name"] == "outrider_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

    # Dashboard: status, reason and action, autonomy banner, targets with breaker and cooldown countdown.
    status = page.locator("#status-title")
    assert "Blocked" in status.inner_text() and "Circuit Breaker" in status.inner_text()
    assert "Circuit breaker open on payments-api after 2 consecutive failures" in page.locator(".reason").inner_text()
    assert "Autonomy enabled" in page.get_by_role("region", name="Autonomy", exact=True).inner_text()
    row = page.get_by_role("row", name="payments-api")
    assert "Open" in row.inner_text() and "left" in row.inner_text()
    page.locator("#live.connected").wait_for()
    _check_page(page, output_dir, "dashboard")

    # A run posted now appears in the activity feed without a reload, and the status figures refresh.
    page.evaluate("window.__marker = 'same page'")
    server.post(support.event("run.created", runid="run-posted-live", target="docs-site"))
    page.get_by_role("link", name="Run run-posted-live created").wait_for()
    server.post(support.target_status("payments-api", health="Healthy", breaker_state="Closed", pending_runs=0))
    page.locator("#status-title", has_text="Healthy").wait_for()
    assert page.evaluate("window.__marker") == "same page"
    _check_page(page, output_dir, "dashboard-live")

    # Run History: every run, then filtered by status.
    page.get_by_role("link", name="Run History").click()
    page.wait_for_url("**/runs")
    table = page.locator("table.runs tbody")
    assert table.locator("tr").count() == 6
    assert page.locator("td .text-error", has_text="TimeoutError in code").count() == 2
    _check_page(page, output_dir, "runs")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**status=failed**")
    assert sorted(table.locator("th a").all_inner_texts()) == ["run-fail-1", "run-fail-2"]
    _check_page(page, output_dir, "runs-filtered")

    # Run detail: timeline, LLM usage by phase and model, error and traceback tail, event log, sibling links.
    page.get_by_role("link", name="run-fail-2").click()
    page.wait_for_url("**/runs/run-fail-2?namespace=default")
    assert "failed" in page.locator("#run-title").inner_text()
    assert page.locator(".timeline li").count() == 2
    assert "TimeoutError: tests did not finish in 600s" in page.locator("pre.traceback").inner_text()
    assert page.get_by_role("table", name="By model").locator("tbody tr").inner_text().startswith("anthropic/claude-sonnet")
    assert page.locator("ol.log li").count() == 9
    _check_page(page, output_dir, "run-detail")
    page.get_by_role("link", name="run-fail-1").click()
    page.wait_for_url("**/runs/run-fail-1?namespace=default")
    assert errors == []
    context.close()


def test_console_reads_without_javascript(server: support.Server, browser: Any, output_dir: Path) -> None:
    _seed(server)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.goto(server.url + "/login?next=/runs")
    page.get_by_label("API token").fill(support.TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/runs")
    assert page.locator("table.runs tbody tr").count() == 5
    page.goto(server.url + "/")
    assert "Blocked" in page.locator("#status-title").inner_text()
    assert "Live updates need JavaScript" in page.locator("#live").inner_text()
    page.screenshot(path=str(output_dir / "dashboard-nojs.png"), full_page=True)
    context.close()


def test_console_empty_and_error_states(server: support.Server, browser: Any, output_dir: Path) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    _sign_in(page, server)
    assert "No operator heartbeat yet." in page.locator(".reason").inner_text()
    assert "Error" in page.locator("#status-title").inner_text()
    assert page.get_by_text("No Target has reported its status yet.").count() == 1
    _check_page(page, output_dir, "dashboard-empty")
    page.goto(server.url + "/runs")
    assert page.get_by_text("No runs yet.").count() == 1
    response = page.goto(server.url + "/runs/unknown-run")
    assert response is not None and response.status == 404
    assert "No event has named run 'unknown-run'." in page.get_by_role("alert").inner_text()
    _check_page(page, output_dir, "run-not-found")
    context.close()


def test_console_max_open_prs_view(server: support.Server, browser: Any, output_dir: Path) -> None:
    server.post(
        support.heartbeat(enabled=False, period=30, autonomy_mode="drain", autonomy_reason="incident 42",
                          autonomy_since=(datetime.now(UTC) - timedelta(minutes=5)).isoformat()),
        support.target_status("web-frontend", health="Blocked", health_reason="MaxOpenPRs", open_prs=2, max_open_prs=2,
                              pending_runs=5),
        *support.run_events("run-pr-1", "web-frontend", prs=1),
        *support.run_events("run-pr-2", "web-frontend", prs=1, start=datetime.now(UTC) - timedelta(minutes=3)),
    )
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    _sign_in(page, server)
    title = page.locator("#status-title").inner_text()
    assert "Max PRs" in title and "Autonomy Paused" in title
    assert "EMERGENCY STOP" in page.get_by_role("region", name="Autonomy", exact=True).inner_text()
    assert "incident 42" in page.get_by_role("region", name="Autonomy", exact=True).inner_text()
    assert "Max open PRs reached on web-frontend (2/2)." in page.locator(".reason").inner_text()
    assert page.locator(".open-prs li").count() == 2  # the PRs the runs reported (both #700: one per run)
    _check_page(page, output_dir, "dashboard-max-prs")
    context.close()


def test_api_docs_render_offline_under_a_strict_csp(server: support.Server, browser: Any, output_dir: Path) -> None:
    """/docs is Swagger UI from packaged files: every request stays on the control plane (no CDN), the page runs
    no inline script (the CSP forbids it), and the API's operations are listed."""
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    response = page.goto(server.url + "/docs")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_text("/v1/events/stream").first.wait_for()
    page.screenshot(path=str(output_dir / "api-docs.png"))
    assert "Outrider control plane" in page.content()
    assert problems == [], problems
    assert requests and all(url.startswith(server.url) or url.startswith("data:") for url in requests), requests


def test_a_tenants_reader_sees_only_its_own_in_the_browser(server: support.Server, browser: Any, output_dir: Path) -> None:
    """Two namespaces with the same Target and Run names; a read key bound to team-a signs in and sees team-a only,
    on the dashboard, in Run History and on the run page."""
    now = datetime.now(UTC)
    for namespace, outcome in (("team-a", "succeeded"), ("team-b", "failed")):
        server.post(*[{**event, "namespace": namespace}
                      for event in support.run_events("web-1", "web", outcome=outcome, start=now - timedelta(minutes=5))])
        server.post({**support.target_status("web", health="Healthy" if namespace == "team-a" else "Failed"), "namespace": namespace})
    secret = server.client.post("/v1/keys", json={"role": "read", "namespaces": ["team-a"]}).json()["secret"]
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto(server.url + "/login?next=/runs")
    page.get_by_label("API token").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/runs")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "team-a" in rows.first.inner_text() and "succeeded" in rows.first.inner_text()
    page.screenshot(path=str(output_dir / "tenant-runs.png"))
    page.get_by_role("link", name="web-1").click()
    page.wait_for_url("**/runs/web-1?namespace=team-a")
    assert "succeeded" in page.locator("#run-title").inner_text()
    page.goto(server.url + "/")
    body = page.locator("body").inner_text()
    assert "team-b" not in body and "Failed" not in body
    response = page.goto(server.url + "/runs/web-1?namespace=team-b")
    assert response is not None and response.status == 404


def test_a_running_runs_page_updates_live(server: support.Server, browser: Any, output_dir: Path) -> None:
    """Elapsed time ticks; progress, figures and the event tail follow the run's events without a reload; the page
    reloads into the finished record when the run ends."""
    start = datetime.now(UTC) - timedelta(seconds=70)
    server.post(
        support.event("run.created", runid="watch-me", target="docs-site", at=start),
        support.event("run.started", runid="watch-me", target="docs-site", at=start, data={"node": "gpu-node-3", "gpu": "A100"}),
        support.event("run.stage.started", runid="watch-me", target="docs-site", at=start, data={"stage": "search"}),
    )
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _sign_in(page, server)
    page.goto(server.url + "/runs/watch-me")
    page.locator("#live.connected").wait_for()
    elapsed = page.locator("#run-live [data-elapsed]")
    first = elapsed.inner_text()
    assert first.startswith("1m")
    page.wait_for_function("(before) => document.querySelector('#run-live [data-elapsed]').textContent !== before", arg=first)
    page.evaluate("window.__marker = 'same page'")
    server.post(support.event("run.progress", runid="watch-me", target="docs-site",
                              data={"stage": "search", "iteration": 4, "max_iterations": 16, "best_metric": 0.87}))
    page.locator("#run-live", has_text="iteration 4 of 16").wait_for()
    live = page.locator("#run-live").inner_text().lower()
    assert "25.0%" in live and "best metric" in live and "0.87" in live and "run.progress" in live
    assert page.evaluate("window.__marker") == "same page"
    _check_page(page, output_dir, "run-live")
    server.post(support.event("run.succeeded", runid="watch-me", target="docs-site"))
    page.wait_for_function("() => window.__marker === undefined")  # reloaded into the finished record
    page.locator("#run-title", has_text="succeeded").wait_for()
    assert page.locator("#run-live").count() == 0
    assert errors == []
    context.close()


def test_fact_cards_stay_in_balanced_rows_at_every_width(server: support.Server, browser: Any, output_dir: Path) -> None:
    """A run page's nine facts never leave one card alone in a row (issue 17), whatever the window's width."""
    _seed(server)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    _sign_in(page, server)
    page.goto(server.url + "/runs/run-fail-2")
    assert page.locator("dl.figures").first.locator(":scope > div").count() == 9
    for width in range(700, 2000, 60):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)  # the resize handler runs
        for rows in page.evaluate(CARD_ROWS_JS):
            assert max(rows) - min(rows) <= 1, f"width {width}: fact cards in rows of {rows}"
    context.close()
