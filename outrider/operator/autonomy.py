"""Reads the autonomy ConfigMap into one decision: may agents start new work, and must running work stop?

The ConfigMap is the big red switch people flip with ``kubectl``; its format is documented in
docs/concepts/autonomy.md. Anything that is not clearly "enabled" is treated as paused: a missing ConfigMap
(reason ConfigMissing) or one that cannot be parsed (reason ConfigInvalid) holds every new Run. Fail closed.
Pure: no I/O, so the parsing rules are unit-tested on their own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from outrider.common import k8s

# Strict on purpose: the CLI and the console read the same ConfigMap and understand exactly these two words.
_TRUE = {"true"}
_FALSE = {"false"}


@dataclasses.dataclass(frozen=True)
class Autonomy:
    """What the ConfigMap says, after the fail-closed rules."""

    enabled: bool
    mode: str  # hold | drain (drain only matters while disabled)
    reason: str  # the hold reason for Runs: AutonomyPaused, ConfigMissing or ConfigInvalid ("" while enabled)
    message: str  # for people: the ConfigMap's own `reason`, or what is wrong with it
    budget_usd_per_hour: float | None = None  # the global budget (budgetUsdPerHour); None: no limit
    budget_usd_per_day: float | None = None
    progress_timeout_seconds: int | None = None  # the watchdog's default (progressTimeoutSeconds); None: none

    @property
    def draining(self) -> bool:
        return not self.enabled and self.mode == k8s.AUTONOMY_MODE_DRAIN


def parse(configmap: dict[str, Any] | None, *, namespace: str = "", name: str = k8s.AUTONOMY_CONFIGMAP_DEFAULT) -> Autonomy:
    """The autonomy decision from the ConfigMap object as returned by the API (None when it does not exist)."""
    where = f"{namespace}/{name}" if namespace else name
    if configmap is None:
        return Autonomy(False, k8s.AUTONOMY_MODE_HOLD, k8s.REASON_CONFIG_MISSING, f"ConfigMap {where} not found; autonomy is paused until it exists")
    data = configmap.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return _invalid(where, "its data is not a map")
    raw_enabled = data.get(k8s.AUTONOMY_KEY_ENABLED)
    if not isinstance(raw_enabled, str):
        return _invalid(where, f"key '{k8s.AUTONOMY_KEY_ENABLED}' is missing (expected \"true\" or \"false\")")
    enabled_text = raw_enabled.strip().lower()
    if enabled_text in _TRUE:
        enabled = True
    elif enabled_text in _FALSE:
        enabled = False
    else:
        return _invalid(where, f"'{k8s.AUTONOMY_KEY_ENABLED}' is {raw_enabled!r} (expected \"true\" or \"false\")")
    raw_mode = data.get(k8s.AUTONOMY_KEY_MODE, k8s.AUTONOMY_MODE_HOLD)
    mode = raw_mode.strip().lower() if isinstance(raw_mode, str) else raw_mode
    if mode == "":
        mode = k8s.AUTONOMY_MODE_HOLD
    if mode not in k8s.AUTONOMY_MODES:
        return _invalid(where, f"'{k8s.AUTONOMY_KEY_MODE}' is {raw_mode!r} (expected \"hold\" or \"drain\")")
    budget: dict[str, float | None] = {}
    for key in (k8s.AUTONOMY_KEY_BUDGET_HOUR, k8s.AUTONOMY_KEY_BUDGET_DAY):
        raw = data.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            budget[key] = None
            continue
        try:
            value = float(raw) if isinstance(raw, str) else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < 0:
            return _invalid(where, f"'{key}' is {raw!r} (expected a number of US dollars >= 0)")
        budget[key] = value
    hour, day = budget[k8s.AUTONOMY_KEY_BUDGET_HOUR], budget[k8s.AUTONOMY_KEY_BUDGET_DAY]
    raw_timeout = data.get(k8s.AUTONOMY_KEY_PROGRESS_TIMEOUT)
    timeout: int | None = None
    if raw_timeout is not None and not (isinstance(raw_timeout, str) and not raw_timeout.strip()):
        text = raw_timeout.strip() if isinstance(raw_timeout, str) else ""
        if not text.isdigit() or not 1 <= int(text) <= 604800:
            return _invalid(where, f"'{k8s.AUTONOMY_KEY_PROGRESS_TIMEOUT}' is {raw_timeout!r} (expected whole seconds, 1 to 604800)")
        timeout = int(text)
    note = data.get(k8s.AUTONOMY_KEY_REASON)
    note = note.strip() if isinstance(note, str) else ""
    if enabled:
        return Autonomy(True, mode, "", note, hour, day, timeout)
    return Autonomy(False, mode, k8s.REASON_AUTONOMY_PAUSED, note or "autonomy is disabled in the autonomy ConfigMap",
                    hour, day, timeout)


def _invalid(where: str, problem: str) -> Autonomy:
    # A broken ConfigMap must not be read as "drain" either: hold, the least surprising safe state.
    return Autonomy(False, k8s.AUTONOMY_MODE_HOLD, k8s.REASON_CONFIG_INVALID, f"ConfigMap {where} is invalid: {problem}; autonomy is paused")
