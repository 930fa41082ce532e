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

The rules (:func:`policy`, :func:`verdict`) are pure; the control plane is asked by
``control_plane_client.ActivityClient``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

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
