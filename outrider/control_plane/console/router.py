"""The console's pages: Dashboard, Run History, Run detail, and the login form that sets the token cookie.

Server-rendered with Jinja2 so every page reads without JavaScript; ``console.js`` only adds the live
activity feed (Server-Sent Events), status refresh and cooldown countdowns. Pages read the store directly and
build the same models the API returns (the system status comes from :mod:`outrider.control_plane.status`, the
one function the API, the CLI and the metrics use). The console is read-only.

Auth: the login form checks an API key (or token) that may read, and starts a server-side session
(``sessions.py``): the ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over HTTPS) holds a random session
id, never the key. Logout, the key's revocation and the session's expiry end it on the server. Pages
without a live session redirect to the form; a bearer header works too (scripts). The live stream the page
subscribes to (``/console/events/stream``) accepts the cookie, because a browser's ``EventSource`` cannot
send an ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
import markupsafe
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from outrider.common import events
from outrider.control_plane import auth, bodies, budgets, errors, keys, params, schemas, status, store
from outrider.control_plane.principals import Principal, Role
from outrider.control_plane.routes import events as event_routes
from outrider.control_plane.routes import status as status_routes

COOKIE = "outrider_session"
PAGE_SIZE = 25
RUN_EVENTS_LIMIT = 1000
TRACEBACK_TAIL_LINES = 40
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}

_here = Path(str(resources.files("outrider.control_plane.console")))
templates = Jinja2Templates(directory=str(_here / "templates"))
templates.env.undefined = jinja2.StrictUndefined

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)


# --- formatting helpers (also available to templates) ----------------------------------------------------


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def fmt_time(moment: datetime | None) -> str:
    moment = _aware(moment)
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_ago(moment: datetime | None, now: datetime | None = None) -> str:
    moment = _aware(moment)
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    if seconds < 0:
        return "in " + status.humanize_seconds(-seconds)
    if seconds < 5:
        return "just now"
    return status.humanize_seconds(seconds) + " ago"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    return status.humanize_seconds(seconds)


def fmt_int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_bytes(value: int | None) -> str:
    """A size people read at a glance (1.5 KiB, 3.2 MiB); exact bytes below 1 KiB."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fmt_usd(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def iso(moment: datetime | None) -> str:
    moment = _aware(moment)
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def code_spans(text: str) -> markupsafe.Markup:
    """Escape ``text`` and show its `backtick` spans (commands in reasons and actions) as <code>."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def is_web_link(url: object) -> bool:
    """Whether a URL an event carried may become a link: http(s) with a host. Anything else (``javascript:``,
    ``data:``, relative paths) is shown as text: events come from agents, and a link is a click away from XSS."""
    if not isinstance(url, str) or len(url) > 2048:
        return False
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


templates.env.tests["weblink"] = is_web_link
def current_stage(run: schemas.RunRecord) -> str | None:
    """The stage a running run is in (the latest started and not completed); None when it is in none or finished."""
    if run.completed_at is not None:
        return None
    open_stages = [(t.started_at, name) for name, t in run.metrics.phase_timings.items() if t.started_at and t.duration_seconds is None]
    return max(open_stages, key=lambda item: _aware(item[0]) or datetime.min.replace(tzinfo=UTC))[1] if open_stages else None


templates.env.filters.update(code=code_spans, time=fmt_time, ago=fmt_ago, duration=fmt_duration, int=fmt_int, usd=fmt_usd, iso=iso,
                             current_stage=current_stage, bytes=fmt_bytes)


# --- auth -----------------------------------------------------------------------------------------------


async def _principal_of_session(request: Request, session_id: str) -> Principal | None:
    state = request.app.state
    key_id = await asyncio.to_thread(state.sessions.key_of, session_id)
    if key_id is None:
        return None
    kind, _, digest = key_id.partition(":")
    if kind in ("token", "operator-token"):  # a configured token logged in: it must still be configured
        configured = state.tokens if kind == "token" else state.operator_tokens
        if not any(hmac.compare_digest(keys.digest(token)[:32], digest) for token in configured):
            return None
        return auth.ADMIN_TOKEN if kind == "token" else auth.OPERATOR_TOKEN
    record = await asyncio.to_thread(state.keys.get, key_id)
    return record.principal() if record is not None and record.usable(datetime.now(UTC)) else None


async def _reader(request: Request) -> Principal | None:
    """The signed-in reader (session cookie, else a bearer header), also left on ``request.state.principal``;
    None when there is none or it may not read."""
    session_id = request.cookies.get(COOKIE)
    principal = await _principal_of_session(request, session_id) if session_id else None
    if principal is None and (presented := auth.bearer(request)) is not None:
        try:
            principal = await auth.resolve(request.app.state, presented)
        except errors.APIError:
            principal = None
    if principal is None or not principal.can_read:
        return None
    request.state.principal = principal
    return principal


NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _scope(request: Request, namespace: str | None = None) -> store.Scope:
    """What the signed-in reader may see, narrowed to ``namespace`` (or the page's ``?namespace=``) when given."""
    principal: Principal = request.state.principal
    wanted = namespace or request.query_params.get("namespace") or None
    if wanted is not None and (len(wanted) > 63 or not NAMESPACE.match(wanted)):
        wanted = None
    return store.Scope.of(principal, wanted)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def _safe_next(value: str | None) -> str:
    """Only local paths: never redirect a freshly logged-in user to another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _store(request: Request) -> store.Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _demo(request: Request) -> bool:
    return bool(getattr(request.app.state, "demo", False))


#: The console says "catching up" when the projection lags the event log by more than this (seconds).
CATCHING_UP_SECONDS = 5.0


def _lag(request: Request) -> float | None:
    """The projection's lag when it is worth telling (over :data:`CATCHING_UP_SECONDS`), else None."""
    try:
        lag = _store(request).projection_lag_seconds()
    except store.StoreUnavailable:
        return None  # the page itself says when the store is unavailable
    return lag if lag > CATCHING_UP_SECONDS else None


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    base = {"demo": _demo(request), "now": datetime.now(UTC), "path": request.url.path, "catching_up": _lag(request)}
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response


def unavailable(request: Request, exc: Exception) -> HTMLResponse:
    """A console page the store cannot answer (the app's one StoreUnavailable handler renders it): 503."""
    return _render(request, "error.html", {"title": "The store is unavailable",
                                           "message": f"{exc}. Nothing is lost; reload in a moment."}, status_code=503)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    return _render(request, "login.html", {"title": "Sign in", "next": _safe_next(next), "error": None})


#: The largest login form read (bytes): a key and a path fit many times over.
LOGIN_BODY_MAX = 4096
#: Failed logins per client address, for the slow-down (bounded: cleared when it grows past this).
_FAILED_LOGINS: dict[str, int] = {}
FAILED_LOGINS_TRACKED = 10_000


def _same_origin(request: Request) -> bool:
    """A login form posted from another site is refused (login CSRF). Browsers send Origin (and Sec-Fetch-Site)
    with every POST; a client that sends neither is no browser, and no CSRF vector."""
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    if not _same_origin(request):
        return Response("cross-origin login refused", status_code=403, media_type="text/plain")
    # The form posts application/x-www-form-urlencoded; parsed here so the console needs no multipart library.
    try:
        body = await bodies.read(request, LOGIN_BODY_MAX)
    except errors.APIError:
        return Response("form too large", status_code=413, media_type="text/plain")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    token = (fields.get("token") or [""])[0].strip()
    next = (fields.get("next") or ["/"])[0]
    state = request.app.state
    remote = request.client.host if request.client else "?"
    try:
        principal = await auth.resolve(state, token) if token else None
    except errors.APIError:
        principal = None
    if principal is None or not principal.can_read:
        failures = _FAILED_LOGINS.get(remote, 0) + 1
        if len(_FAILED_LOGINS) >= FAILED_LOGINS_TRACKED:
            _FAILED_LOGINS.clear()
        _FAILED_LOGINS[remote] = failures
        state.audit.record("login.failed", "refused", principal, remote=remote,
                           detail={"reason": "cannot read" if principal else "invalid credential", "failures": failures})
        log.warning("console: failed login from %s (%d in a row)", remote, failures)
        await asyncio.sleep(min(5.0, 0.25 * 2 ** min(failures - 1, 5)))  # slowed: guessing gets expensive
        if principal is not None:
            message = f"This token has role {principal.role.value}; the console needs one that may read (read, operator or admin)."
        else:
            message = "Enter an API token." if not token else "That token is not valid."
        return _render(request, "login.html", {"title": "Sign in", "next": _safe_next(next), "error": message}, 401)
    _FAILED_LOGINS.pop(remote, None)
    if principal.role is Role.RUN:
        return _render(request, "login.html", {"title": "Sign in", "next": _safe_next(next),
                                               "error": "A run credential cannot open the console."}, 401)
    key_id = principal.key_id
    if key_id in ("token", "operator-token"):
        key_id = f"{key_id}:{keys.digest(token)[:32]}"
    session_id = await asyncio.to_thread(state.sessions.create, key_id)
    state.audit.record("login", "ok", principal, remote=remote)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, session_id, max_age=state.settings.session_seconds, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session on the server (the cookie alone would not: a copy of it would still work)."""
    await asyncio.to_thread(request.app.state.sessions.end, request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/console/static/{name}")
async def static(name: str) -> Response:
    path = _here / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"})


# --- dashboard -----------------------------------------------------------------------------------------


#: How many recent runs of a Target are searched for its unmerged PRs.
PR_SEARCH_RUNS = 200


def _unmerged_prs(st: store.Store, target: str, scope: store.Scope) -> list[dict[str, Any]]:
    """PRs that runs of ``target`` reported created and not merged (newest runs first; closed PRs report nothing)."""
    found = []
    for row in st.list_runs(target=target, limit=PR_SEARCH_RUNS, scope=scope):
        for pr in row.get("pull_requests") or []:
            if not pr.get("merged"):
                found.append({"number": pr["number"], "url": pr["url"], "run_id": row["run_id"]})
    return found


def _system(request: Request) -> tuple[schemas.SystemStatus, list[schemas.TargetState], dict[str, list[dict[str, Any]]]]:
    now = datetime.now(UTC)
    st = _store(request)
    scope = _scope(request)
    inputs = status_routes.read(st, scope)
    targets = status.target_states(inputs.target_statuses, now)
    prs: dict[str, list[dict[str, Any]]] = {}
    if inputs.store_error is None:
        for t in targets:
            if t.blocked_by == schemas.BlockedBy.MAX_OPEN_PRS:
                try:
                    prs[t.target] = _unmerged_prs(st, t.target, _scope(request, t.namespace))
                except store.StoreUnavailable:
                    prs[t.target] = []
    return status.compute(inputs, now=now), targets, prs


def _budgets(request: Request) -> dict[str, schemas.Budget]:
    """Spend and limits per Target (GET /v1/budgets' figures) for the targets table, keyed by target name
    (``namespace/name`` outside ``default``); empty if the store fails."""
    scope = _scope(request)
    try:
        with _store(request).reading() as conn:
            found = budgets.read(conn, sees=None if scope == store.EVERYTHING else scope.sees,
                                 include_global=request.state.principal.unbounded).budgets
            return {b.scope if b.namespace in (None, "default") else f"{b.namespace}/{b.scope}": b for b in found}
    except Exception:  # noqa: BLE001 - the status section already says when the store cannot be read
        return {}


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    if not await _reader(request):
        return _login_redirect(request)
    system, targets, open_prs = await asyncio.to_thread(_system, request)
    spend = await asyncio.to_thread(_budgets, request)
    return _render(request, "dashboard.html", {"title": "Dashboard", "system": system, "targets": targets,
                                                      "open_prs": open_prs, "budgets": spend,
                                                      "activity_types": [str(t) for t in status.ACTIVITY_TYPES],
                                                      "all_types": [t.value for t in events.EventType]})


@router.get("/console/partials/status", response_class=HTMLResponse)
async def status_partial(request: Request) -> Response:
    """The dashboard's status and targets sections alone, for the live refresh."""
    if not await _reader(request):
        return Response(status_code=401)
    system, targets, open_prs = await asyncio.to_thread(_system, request)
    spend = await asyncio.to_thread(_budgets, request)
    return _render(request, "_status.html", {"system": system, "targets": targets, "open_prs": open_prs,
                                             "budgets": spend})


@router.get("/console/events/stream")
async def event_stream(request: Request) -> Response:
    """``GET /v1/events/stream`` itself (same SSE, same replay by ``Last-Event-ID``), authenticated by the cookie.

    A browser's ``EventSource`` cannot send an ``Authorization`` header, so the page subscribes here.
    """
    if not await _reader(request):
        return Response(status_code=401)
    return await event_routes.stream(
        request, _store(request), request.app.state.settings, _scope(request), target=None, run_id=None, type=None, after=None
    )


@router.get("/console/partials/runs/{run_id}/live", response_class=HTMLResponse)
async def run_live_partial(request: Request, run_id: str) -> Response:
    """The live part of a run's page, re-rendered as its events arrive (console.js); says so when it finished."""
    if not await _reader(request):
        return Response(status_code=401)
    try:
        found = await asyncio.to_thread(_detail, _store(request), run_id, _scope(request))
    except (store.AmbiguousRun, store.StoreUnavailable):
        return Response(status_code=503)
    if found is None:
        return Response(status_code=404)
    return _render(request, "_run_live.html", {"describe": _describe, **found})


@router.get("/console/partials/activity", response_class=HTMLResponse)
async def activity_partial(request: Request, seq: Annotated[int, Query(ge=1, le=params.MAX_SEQ)]) -> Response:
    """One activity item rendered for the live feed (so the feed's markup lives only in templates)."""
    if not await _reader(request):
        return Response(status_code=401)
    found = await asyncio.to_thread(_store(request).list_events, after_seq=seq - 1, limit=1, scope=_scope(request))
    if not found or found[0]["seq"] != seq or found[0]["event"].get("type") not in status.ACTIVITY_TYPES:
        return Response(status_code=204)
    item = status.activity_item(schemas.StoredEvent.model_validate(found[0]))
    return _render(request, "_activity_item.html", {"item": item})


# --- run history ---------------------------------------------------------------------------------------


def _history(st: store.Store, scope: store.Scope, target: str | None, run_status: str | None, since: datetime | None,
             before: tuple[datetime, str] | None) -> tuple[list[schemas.RunRecord], str | None]:
    rows = st.list_runs(target=target, status=run_status, since=since, before=before, limit=PAGE_SIZE + 1, scope=scope)
    runs = [schemas.RunRecord.model_validate(row) for row in rows[:PAGE_SIZE]]
    cursor = None
    if len(rows) > PAGE_SIZE and runs:
        last = runs[-1]
        cursor = params.encode_cursor({"c": iso(last.created_at), "r": last.run_id})
    return runs, cursor


@router.get("/runs", response_class=HTMLResponse)
async def run_history(request: Request, cursor: str | None = None) -> Response:
    """Runs newest first, filtered by target, status and window, a page at a time (cursor links)."""
    if not await _reader(request):
        return _login_redirect(request)
    query = request.query_params
    target = (query.get("target") or "").strip() or None
    run_status = (query.get("status") or "").strip() or None
    window = (query.get("window") or "").strip() or None
    problems: list[str] = []
    if run_status is not None and run_status not in {s.value for s in schemas.RunStatus}:
        problems.append(f"Unknown status {run_status!r}; showing every status.")
        run_status = None
    if window is not None and window not in WINDOWS:
        problems.append(f"Unknown window {window!r}; showing all time.")
        window = None
    since = datetime.now(UTC) - WINDOWS[window] if window else None
    before = None
    if cursor:
        try:
            position = params.decode_cursor(cursor, "c", "r")
            before = (params.moment(position["c"]), str(position["r"])[:253])
        except errors.APIError:
            problems.append("That page link is no longer valid; showing the newest runs.")
    filters = {"target": target or "", "status": run_status or "", "window": window or ""}
    runs, next_cursor = await asyncio.to_thread(_history, _store(request), _scope(request), target, run_status, since, before)
    next_url = None
    if next_cursor:
        next_url = "/runs?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    first_url = "/runs" + ("?" + urlencode({k: v for k, v in filters.items() if v}) if any(filters.values()) else "")
    return _render(request, "runs.html", {
        "title": "Run History", "runs": runs, "filters": filters, "problems": problems,
        "statuses": [s.value for s in schemas.RunStatus], "windows": list(WINDOWS),
        "next_url": next_url, "first_url": first_url if cursor else None,
    })


# --- run detail ----------------------------------------------------------------------------------------


def _timeline(run: schemas.RunRecord) -> list[dict[str, Any]]:
    """Stage bars positioned in percent of the run's span (start … end, or now while running)."""
    stages = [(name, timing) for name, timing in run.metrics.phase_timings.items() if timing.started_at is not None]
    if not stages:
        return []
    starts: list[datetime] = [m for _, timing in stages if (m := _aware(timing.started_at)) is not None]
    run_start = _aware(run.started_at)
    begin: datetime = min([*starts, run_start] if run_start is not None else starts)
    ends: list[datetime] = [
        start + timedelta(seconds=t.duration_seconds)
        for _, t in stages
        if t.duration_seconds is not None and (start := _aware(t.started_at)) is not None
    ]
    end: datetime = _aware(run.completed_at) or max([datetime.now(UTC), *ends])
    span = max((end - begin).total_seconds(), 1e-6)
    bars = []
    for name, timing in sorted(stages, key=lambda item: _aware(item[1].started_at) or begin):
        start = _aware(timing.started_at) or begin
        offset = (start - begin).total_seconds()
        length = timing.duration_seconds if timing.duration_seconds is not None else (end - start).total_seconds()
        bars.append({
            "stage": name,
            "started_at": start,
            "duration": timing.duration_seconds,
            # Open while the run runs; a stage the run ended in without completing it is "unfinished", not running.
            "open": timing.duration_seconds is None and run.completed_at is None,
            "unfinished": timing.duration_seconds is None and run.completed_at is not None,
            "left": round(100 * offset / span, 2),
            "width": max(0.8, round(100 * max(length, 0) / span, 2)),
        })
    return bars


def _detail(st: store.Store, run_id: str, scope: store.Scope) -> dict[str, Any] | None:
    row = st.get_run(run_id, scope)
    if row is None:
        return None
    run = schemas.RunRecord.model_validate(row)
    scope = dataclasses.replace(scope, namespaces=frozenset({run.namespace}))  # this run's tenant only
    log = [schemas.StoredEvent.model_validate(item) for item in st.list_events(run_id=run_id, limit=RUN_EVENTS_LIMIT, scope=scope)]
    traceback = None
    for stored in reversed(log):
        if stored.event.type == events.EventType.RUN_FAILED and stored.event.data.get("traceback"):
            lines = str(stored.event.data["traceback"]).rstrip().splitlines()
            traceback = {"tail": "\n".join(lines[-TRACEBACK_TAIL_LINES:]), "omitted": max(0, len(lines) - TRACEBACK_TAIL_LINES)}
            break
    siblings: list[schemas.RunRecord] = []
    if run.target:
        siblings = [schemas.RunRecord.model_validate(r) for r in st.list_runs(target=run.target, limit=11, scope=scope)]
        siblings = [r for r in siblings if r.run_id != run_id][:10]
    return {"run": run, "log": log, "traceback": traceback, "siblings": siblings, "timeline": _timeline(run),
            "truncated": len(log) >= RUN_EVENTS_LIMIT, "live": _live(run, log), "placement": _placement(log)}


#: What a worker may report about where it runs (``run.started`` data), shown when present.
PLACEMENT_KEYS = ("pod", "node", "gpu", "region")
#: Progress keys with a meaning of their own; every other numeric key is shown as a figure the worker reports.
PROGRESS_KEYS = ("stage", "iteration", "max_iterations", "eta_seconds")
LIVE_TAIL = 10


def _placement(log: list[schemas.StoredEvent]) -> dict[str, str]:
    started = next((s for s in reversed(log) if s.event.type == events.EventType.RUN_STARTED), None)
    if started is None:
        return {}
    data = started.event.data
    return {key: str(data[key]) for key in PLACEMENT_KEYS if isinstance(data.get(key), (str, int, float)) and str(data[key])}


def _live(run: schemas.RunRecord, log: list[schemas.StoredEvent]) -> dict[str, Any] | None:
    """What a running run is doing now: its stage, its latest progress (as reported: iteration of a bound, the
    percentage and ETA only when the worker gave them, every other number it sent), since when, and its last
    events. None once the run has finished."""
    if run.status.value in ("succeeded", "failed", "cancelled"):
        return None
    stage = current_stage(run)
    latest = next((s for s in reversed(log) if s.event.type == events.EventType.RUN_PROGRESS
                   and (stage is None or s.event.data.get("stage") == stage)), None)
    progress = None
    if latest is not None:
        data = latest.event.data
        iteration, bound = data.get("iteration"), data.get("max_iterations")
        eta = data.get("eta_seconds")
        progress = {
            "stage": data.get("stage"), "iteration": iteration, "max_iterations": bound, "at": latest.event.time,
            "percent": round(100 * iteration / bound, 1) if isinstance(iteration, int) and isinstance(bound, int) and bound > 0 else None,
            "eta_seconds": eta if isinstance(eta, (int, float)) and not isinstance(eta, bool) and eta >= 0 else None,
            "figures": {k: v for k, v in data.items() if k not in PROGRESS_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)},
        }
    return {"stage": stage, "progress": progress, "since": run.started_at or run.created_at,
            "last_event_at": run.last_event_at, "tail": log[-LIVE_TAIL:][::-1]}


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_detail(request: Request, run_id: str) -> Response:
    if not await _reader(request):
        return _login_redirect(request)
    try:
        found = await asyncio.to_thread(_detail, _store(request), run_id, _scope(request))
    except store.AmbiguousRun as exc:
        links = ", ".join(f'<a href="/runs/{quote(run_id)}?namespace={quote(n)}">{markupsafe.escape(n)}</a>' for n in exc.namespaces)
        return _render(request, "error.html", {"title": f"Run {run_id}", "message": markupsafe.Markup(
            f"Run {markupsafe.escape(run_id)} exists in several namespaces: {links}.")}, status_code=409)
    if found is None:
        return _render(request, "error.html", {"title": f"Run {run_id}",
                                               "message": f"No event has named run {run_id!r}."}, status_code=404)
    return _render(request, "run.html", {"title": f"Run {run_id}", "describe": _describe,
                                         "all_types": [t.value for t in events.EventType], **found})


def _describe(stored: schemas.StoredEvent) -> str:
    """One line per event for the run's log."""
    event = stored.event
    data = event.data
    kind = event.type
    if kind in status.ACTIVITY_TYPES:
        return status.activity_item(stored).summary
    if kind in (events.EventType.RUN_STAGE_STARTED, events.EventType.RUN_STAGE_COMPLETED):
        return f"Stage {data.get('stage')} {kind.rsplit('.', 1)[1]}"
    if kind == events.EventType.RUN_PROGRESS:
        bound = f" of {data['max_iterations']}" if data.get("max_iterations") is not None else ""
        return f"Stage {data.get('stage')}: iteration {data.get('iteration')}{bound}"
    if kind == events.EventType.RUN_LOG:
        return f"[{data.get('level')}] {data.get('message')}"
    if kind == events.EventType.RUN_ARTIFACT:
        size = f", {fmt_bytes(data['bytes'])}" if isinstance(data.get("bytes"), int) else ""
        return f"Artifact {data.get('key')} ({data.get('kind')}{size})"
    if kind == events.EventType.RUN_LLM_USAGE:
        cost = f", {fmt_usd(data.get('cost_usd'))}" if data.get("cost_usd") is not None else ""
        phase = f" ({data.get('phase')})" if data.get("phase") else ""
        return (f"LLM {data.get('provider')}/{data.get('model')}{phase}: "
                f"{fmt_int(data.get('input_tokens'))} in, {fmt_int(data.get('output_tokens'))} out{cost}")
    return kind


def percent(part: float | None, whole: float | None) -> float:
    if not part or not whole or math.isnan(part) or whole <= 0:
        return 0.0
    return round(100 * part / whole, 1)


templates.env.globals.update(percent=percent)
