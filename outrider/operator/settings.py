"""The operator's settings, read from the environment (the Helm chart sets them on the Deployment).

Each field says its variable, unit and default. ``OUTRIDER_URL`` and ``OUTRIDER_TOKEN`` are the same two names
every client of the control plane uses (CLI, operator, workers).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from outrider.common import k8s

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _pod_namespace() -> str:
    """The namespace the operator's pod runs in, else ``default`` (outside a cluster)."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTRIDER_", extra="ignore")

    namespace: str = Field(default_factory=_pod_namespace, description=(
        "OUTRIDER_NAMESPACE: where the autonomy ConfigMap lives. Default: the pod's namespace, else 'default'."))
    autonomy_configmap: str = Field(default=k8s.AUTONOMY_CONFIGMAP_DEFAULT, description=(
        "OUTRIDER_AUTONOMY_CONFIGMAP: the autonomy ConfigMap's name. Default 'outrider-autonomy'."))
    url: str | None = Field(default=None, description=(
        "OUTRIDER_URL: the control plane's base URL, e.g. http://outrider-control-plane:8000. Unset: no events are sent."))
    token: str | None = Field(default=None, description="OUTRIDER_TOKEN: bearer token for the control plane.")
    run_signing_key_file: Path | None = Field(default=None, description=(
        "OUTRIDER_RUN_SIGNING_KEY_FILE: file whose first line is the key that signs per-run credentials (the chart "
        "mounts a Secret here; the control plane verifies with the same key). Unset: Jobs get no credential, and "
        "their workers need an ingest key of their own."))
    run_credential_ttl_seconds: int = Field(default=86400, ge=60, le=30 * 86400, description=(
        "OUTRIDER_RUN_CREDENTIAL_TTL_SECONDS: lifetime of a run's credential from its admission, at most (it also "
        "ends when the run finishes, plus the control plane's grace period). Default 86400 (24 h); a Run with "
        "activeDeadlineSeconds gets that plus 10 minutes when shorter."))
    heartbeat_seconds: float = Field(default=30.0, gt=0, description=(
        "OUTRIDER_HEARTBEAT_SECONDS: seconds between operator.heartbeat events. Default 30."))
    events_buffer_max: int = Field(default=10_000, ge=1, description=(
        "OUTRIDER_EVENTS_BUFFER_MAX: events held while the control plane is unreachable; beyond it the oldest are "
        "dropped (outrider_operator_events_dropped_total). Default 10000."))
    events_batch_max: int = Field(default=100, ge=1, description=(
        "OUTRIDER_EVENTS_BATCH_MAX: events per POST /v1/events. Default 100."))
    kube_events_queue_max: int = Field(default=8192, ge=1, description=(
        "OUTRIDER_KUBE_EVENTS_QUEUE_MAX: Kubernetes Events (kubectl describe) waiting to be posted; beyond it the "
        "oldest are dropped (outrider_operator_kube_events_dropped_total). Default 8192 (~1 KB each): the bench's "
        "1,000 Runs admitted, completed, then 1,000 more held and resumed queue ~7,100 Events; 4096 dropped ~2,300 "
        "of them at 25/s)."))
    kube_events_burst: int = Field(default=100, ge=1, description=(
        "OUTRIDER_KUBE_EVENTS_BURST: Kubernetes Events posted back to back before the steady rate applies (the token "
        "bucket's size, as in client-go's EventRecorder). Default 100."))
    kube_events_qps: float = Field(default=50.0, gt=0, description=(
        "OUTRIDER_KUBE_EVENTS_QPS: Kubernetes Events posted per second after the burst, one request at a time. "
        "Default 50: the ~2,000 Events of 1,000 Runs created at once are posted over ~40 s instead of competing "
        "with the status writes that follow them."))
    kube_events_dedup_seconds: float = Field(default=60.0, ge=0, description=(
        "OUTRIDER_KUBE_EVENTS_DEDUP_SECONDS: an Event identical (object, type, reason, message) to the last one "
        "posted for its object within this many seconds is not posted again. Default 60."))
    budget_fail_open: bool = Field(default=False, description=(
        "OUTRIDER_BUDGET_FAIL_OPEN: when the spend cannot be read (no OUTRIDER_URL, control plane down), admit Runs "
        "of Targets with a budget anyway. Default false: hold them with BudgetUnknown (fail closed)."))
    budget_timeout_seconds: float = Field(default=2.0, gt=0, description=(
        "OUTRIDER_BUDGET_TIMEOUT_SECONDS: timeout of one GET /v1/budgets. Default 2."))
    budget_cache_seconds: float = Field(default=5.0, ge=0, description=(
        "OUTRIDER_BUDGET_CACHE_SECONDS: how long one spend answer is reused (never past its resets_at), and how "
        "soon an unknown spend is asked again. Default 5."))
    watchdog_cache_seconds: float = Field(default=5.0, ge=0, description=(
        "OUTRIDER_WATCHDOG_CACHE_SECONDS: how long one answer about a Target's running runs' last activity is "
        "reused by the no-progress watchdog (operator/watchdog.py). Default 5."))
    metrics_port: int = Field(default=9090, ge=0, le=65535, description=(
        "OUTRIDER_METRICS_PORT: Prometheus /metrics port (the CLI's --metrics-port sets it); 0 disables. Default 9090."))
    metrics_host: str = Field(default="0.0.0.0", description=(
        "OUTRIDER_METRICS_HOST: address the metrics server binds. Default 0.0.0.0 (in a pod); tests use 127.0.0.1."))


def load() -> OperatorSettings:
    """Built when the operator starts (not at import), so tests set the environment per run."""
    return OperatorSettings()


def pod_name() -> str:
    """This replica's name, for the heartbeat's source (HOSTNAME is the pod name in Kubernetes)."""
    return os.environ.get("HOSTNAME") or "local"
