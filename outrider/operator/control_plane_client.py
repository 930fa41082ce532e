"""The operator's HTTP clients of the control plane: budget spend for admission, the running runs' last
activity for the no-progress watchdog, and the Targets it lists (for Targets deleted while no operator ran). All are short-timeout, cached readers whose failures become "unknown"
answers the pure rules decide on (``budget.gate`` fails closed; ``watchdog`` decides nothing), never exceptions.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx

from outrider.operator import budget, watchdog

logger = logging.getLogger("outrider.operator.control_plane_client")


class BudgetClient:
    """``GET /v1/budgets`` with a short timeout and a cache of a few seconds per question."""

    def __init__(self, url: str | None, token: str | None, *, timeout: float, cache_seconds: float) -> None:
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._cache: dict[Any, tuple[dt.datetime, budget.Spend | None, str | None]] = {}

    async def fetch(self, target: str, limits: budget.Limits | None, glob: budget.Limits | None,
                    now: dt.datetime, namespace: str = "default") -> tuple[budget.Spend | None, str | None]:
        """(spend, None) or (None, why it is unknown); the target's spend is its namespace's only."""
        if not self.url:
            return None, "OUTRIDER_URL is not set"
        key = (namespace, target, limits, glob)
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2]
        params: dict[str, Any] = {"target": target, "namespace": namespace}
        for prefix, scope in (("", limits), ("global_", glob)):
            if scope is not None and scope.any:
                for name, value in (("usd_per_hour", scope.per_hour), ("usd_per_day", scope.per_day)):
                    if value is not None:
                        params[prefix + name] = value
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        spend: budget.Spend | None = None
        error: str | None = None
        try:
            async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as http:
                response = await http.get(f"{self.url}/v1/budgets", params=params)
            if response.status_code != 200:
                error = f"GET /v1/budgets answered {response.status_code}"
            else:
                spend = budget.parse(response.json(), target)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            error = f"control plane unreachable: {type(exc).__name__}"
        if error:
            logger.info("budget spend for %s unknown: %s", target, error)
        expires = now + dt.timedelta(seconds=self.cache_seconds)
        if spend is not None:
            # Never serve a cached "exceeded" past the moment it frees up.
            for moment in (w.resets_at for w in spend.windows if w.resets_at is not None):
                expires = min(expires, moment)
        self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (expires, spend, error)
        return spend, error


class ActivityClient:
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
                if status.get("stopped") or not isinstance(lag, (int, float)) or lag > watchdog.MAX_PROJECTION_LAG_SECONDS:
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


async def known_targets(url: str | None, token: str | None, *, timeout: float) -> set[tuple[str, str]] | None:
    """(namespace, name) of every Target the control plane lists (``GET /v1/targets``, after its projection caught up
    with what was sent); None when it cannot tell."""
    if not url:
        return None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as http:
            response = await http.get("/v1/targets")
            if response.status_code != 200:
                logger.info("GET /v1/targets answered %d; not looking for Targets deleted while away", response.status_code)
                return None
            return {(str(item.get("namespace") or "default"), str(item["target"])) for item in response.json()}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        logger.info("control plane unreachable (%s); not looking for Targets deleted while away", type(exc).__name__)
        return None
