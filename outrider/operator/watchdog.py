"""The no-progress watchdog: a running Run that has sent nothing for ``progressTimeoutSeconds`` is Stalled.

- **The timeout** comes from the Target's ``spec.watchdog.progressTimeoutSeconds``, else the autonomy ConfigMap's
  ``progressTimeoutSeconds`` (the default for every Target); with neither there is no watchdog. The Target's
  ``spec.watchdog.stopStalledRuns`` says whether a Stalled Run is also stopped.
- **Progress** is any event of the run the control plane holds (``run.progress``, stages, logs, LLM calls; and
  the operator's own ``run.started`` when its Job started): the run record's ``last_event_at``. The operator does
  not see workers' events, so it asks the control plane (``GET /v1/runs?status=running``). When it cannot tell
  — no control-plane URL, unreachable, or its projection lagging more than ``MAX_PROJECTION_LAG_SECONDS`` — it
  decides nothing: a Run is never stopped because the observer went blind.
- **What a stall does** (reconciler): condition ``Stalled=True`` (reason ``NoProgress``), a Warning Event, the
  ``outrider_runs_stalled`` gauge; with ``stopStalledRuns`` the Run fails with reason ``NoProgress`` (the
  breaker counts it, ``run.failed`` says so) and its Job is suspended, which stops its pods as the emergency
  stop does (no delete right needed). Activity after a stall sets ``Stalled=False`` (reason ``Progressing``).

The rules (:func:`policy`, :func:`verdict`) are pure; :class:`Client` is the only I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import httpx

logger = logging.getLogger(__name__)

#: Beyond this projection lag the control plane's view of progress is too old to call a Run stalled.
MAX_PROJECTION_LAG_SECONDS = 30.0
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Policy:
    timeout_seconds: int
    stop: bool


def policy(spec_watchdog: dict[str, Any] | None, default_timeout_seconds: int | None) -> Policy | None:
    """The watchdog of a Target: its own timeout, else the ConfigMap's; None when neither sets one."""
    spec = spec_watchdog if isinstance(spec_watchdog, dict) else {}
    raw = spec.get("progressTimeoutSeconds")
    timeout = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= MIN_TIMEOUT_SECONDS else None
    timeout = timeout if timeout is not None else default_timeout_seconds
    if timeout is None:
        return None
    return Policy(timeout_seconds=min(timeout, MAX_TIMEOUT_SECONDS), stop=spec.get("stopStalledRuns") is True)


@dataclasses.dataclass(frozen=True)
class Verdict:
    stalled: bool
    idle_seconds: float
    #: When to look again if nothing happens: the moment this Run would stall (None once it has).
    recheck_at: dt.datetime | None


def verdict(last_activity: dt.datetime, now: dt.datetime, timeout_seconds: int) -> Verdict:
    idle = (now - last_activity).total_seconds()
    if idle >= timeout_seconds:
        return Verdict(True, idle, None)
    return Verdict(False, idle, last_activity + dt.timedelta(seconds=timeout_seconds))


class Client:
    """The last activity of a Target's running runs, from the control plane; cached a few seconds per Target."""

    def __init__(self, url: str | None, token: str | None, *, timeout: float, cache_seconds: float) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[dt.datetime, dict[str, dt.datetime] | None]] = {}

    async def last_activity(self, namespace: str, target: str, now: dt.datetime) -> dict[str, dt.datetime] | None:
        """Run name → time of its last event, for the Target's runs the control plane has as running; None when
        the control plane cannot tell (see the module docstring)."""
        if not self.url:
            return None
        cached = self._cache.get((namespace, target))
        if cached is not None and now < cached[0]:
            return cached[1]
        found = await self._fetch(namespace, target)
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[(namespace, target)] = (now + dt.timedelta(seconds=self.cache_seconds), found)
        return found

    async def _fetch(self, namespace: str, target: str) -> dict[str, dt.datetime] | None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx.AsyncClient(base_url=self.url or "", timeout=self.timeout, headers=headers) as http:
                projection = await http.get("/v1/projection")
                if projection.status_code != 200:
                    logger.info("watchdog: GET /v1/projection answered %d; not judging progress", projection.status_code)
                    return None
                status = projection.json()
                lag = status.get("lag_seconds")
                if status.get("stopped") or not isinstance(lag, (int, float)) or lag > MAX_PROJECTION_LAG_SECONDS:
                    logger.info("watchdog: the control plane's projection lags %s s; not judging progress", lag)
                    return None
                response = await http.get("/v1/runs", params={"namespace": namespace, "target": target,
                                                               "status": "running", "limit": 1000})
                if response.status_code != 200:
                    logger.info("watchdog: GET /v1/runs answered %d; not judging progress", response.status_code)
                    return None
                found: dict[str, dt.datetime] = {}
                for item in response.json()["items"]:
                    moment = item.get("last_event_at")
                    if isinstance(moment, str):
                        when = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
                        found[str(item["run_id"])] = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
                return found
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.info("watchdog: control plane unreachable (%s); not judging progress", type(exc).__name__)
            return None
