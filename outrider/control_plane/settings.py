"""The control plane's configuration, read from ``OUTRIDER_*`` environment variables.

Every knob the service has lives here, documented where it is defined (unit, default, why). The
settings are built by :func:`get_settings` on first use, never at import time, so tests build their own
:class:`Settings` and pass it to ``create_app``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTRIDER_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./outrider.db",
        description=(
            "SQLAlchemy URL of the store. Default: the embedded SQLite file ./outrider.db. "
            "PostgreSQL: postgresql://user:pass@host/db (the psycopg 3 driver is used)."
        ),
    )
    api_tokens: str = Field(
        default="",
        description="Comma-separated bearer tokens accepted by the API. Empty: only the token file's tokens count.",
    )
    api_token_file: Path | None = Field(
        default=None,
        description=(
            "File holding further tokens, one per line (blank lines and # comments ignored). "
            "`outrider control-plane` writes a generated token to ./outrider.token when no token is configured."
        ),
    )
    operator_tokens: str = Field(
        default="",
        description=(
            "Comma-separated bearer tokens of the operator (role operator: its control events, run lifecycle "
            "events and reads; not key management). The chart gives the operator its own Secret, so workers and "
            "console users never hold the credential that speaks for the operator."
        ),
    )
    run_signing_keys: str = Field(
        default="",
        description=(
            "Keys that verify per-run credentials (outrider.common.credentials), one per line or comma-separated, "
            "each at least 32 bytes; the operator signs with the first of the same list. Empty (and no file): run "
            "credentials are refused."
        ),
    )
    run_signing_keys_file: Path | None = Field(
        default=None, description="File with further run signing keys, one per line (the chart mounts a Secret here)."
    )
    run_credential_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description=(
            "How long a run's credential keeps working after its run finished (seconds, default 300), so the "
            "worker's last buffered events still arrive; after it, 401."
        ),
    )
    key_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description=(
            "How long a replica caches an API key it looked up (seconds, default 2). A revocation takes effect at "
            "once on the replica that revoked it, and within this time on the others."
        ),
    )
    session_seconds: int = Field(
        default=43200, gt=0, description="Console sessions expire this long after login (seconds, default 12 h), enforced by the server."
    )
    audit_retention_days: float = Field(
        default=365.0, gt=0, description="Audit entries older than this are deleted by the retention sweep (days, default 365)."
    )
    max_streams: int = Field(default=500, ge=1, description="Most live SSE streams open at once (default 500); beyond, 429.")
    max_streams_per_key: int = Field(
        default=20, ge=1, description="Most live SSE streams one credential may hold open (default 20); beyond, 429."
    )
    auth_failures_per_minute: int = Field(
        default=30, ge=1,
        description="Failed authentications one client address may make per minute (default 30); beyond, 429 until the minute ends.",
    )
    key_requests_per_second: float = Field(
        default=200.0, ge=0,
        description="Requests one credential may make per second, sustained (default 200; 0: no limit); beyond, 429 with Retry-After.",
    )
    key_request_burst: float = Field(
        default=1000.0, ge=1, description="Requests one credential may make at once before its sustained rate applies (default 1000)."
    )
    key_ingest_bytes_per_second: float = Field(
        default=4 * 1024 * 1024, ge=0,
        description=(
            "Ingest body bytes one credential may send per second, sustained (default 4 MiB; 0: no limit); beyond, "
            "429 with Retry-After and nothing of the request stored."
        ),
    )
    key_ingest_burst_bytes: float = Field(
        default=32 * 1024 * 1024, ge=1, description="Ingest body bytes one credential may send at once (default 32 MiB)."
    )
    namespace_quota_bytes: int | None = Field(
        default=None, ge=1,
        description=(
            "Bytes of events one namespace may keep in the log (default: unset, no quota). At or over it, agents' "
            "events for the namespace get 507 quota_exceeded, nothing stored, until the retention sweep frees space; "
            "the operator's and admins' events are never refused for quota (quota.py)."
        ),
    )
    metrics_require_key: bool = Field(
        default=False,
        description=(
            "Require a credential for /metrics (default false: open, like most exporters). When true, a key that "
            "reads every namespace (role read without namespace or target bounds, operator or admin); /metrics "
            "spans all tenants, so a tenant's bounded key gets 403. What it reveals: docs/metrics.md."
        ),
    )
    metrics_max_targets: int = Field(
        default=200, ge=1, le=100_000,
        description=(
            "Most (namespace, target) pairs with series of their own in /metrics (default 200): every Target the "
            "operator reported first, then the busiest; the rest are summed under target=\"other\" (cardinality.py)."
        ),
    )
    metrics_max_models: int = Field(
        default=50, ge=1, le=10_000,
        description="Most models with series of their own in /metrics (default 50, the busiest); the rest under model=\"other\".",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body POST /v1/events reads, in bytes (default 1 MiB); larger bodies get 413.",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0,
        description=(
            "How long a request's line and headers may take to arrive (seconds, default 10); beyond, 408 and the "
            "connection closes (read_deadlines.py)."
        ),
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0,
        description="How long a request's whole body may take to arrive after its headers (seconds, default 30); beyond, 408.",
    )
    max_connections: int = Field(
        default=1000, ge=1,
        description=(
            "Most connections (and requests in progress) the server takes at once (default 1000); requests beyond "
            "get 503 at once instead of queueing without bound."
        ),
    )
    max_batch_events: int = Field(
        default=1000,
        gt=0,
        description="Most events one POST /v1/events may carry (default 1000); more get 413 batch_too_large.",
    )
    group_commit_max_events: int = Field(
        default=5000,
        gt=0,
        description=(
            "Most events the writer commits in one transaction (default 5000). The writer takes every request "
            "queued while the previous commit ran, up to this many events, so one fsync serves many requests; "
            "the cap bounds how long one transaction holds the write lock."
        ),
    )
    group_commit_max_wait_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Longest the writer waits for more requests before committing a group (seconds). It only waits while "
            "fewer requests have arrived than were in the previous group, i.e. when other clients are writing "
            "concurrently; a single sequential client never waits. Unset (the default): 0 with the writer process, "
            "which commits one group while the server parses the next requests, and 0.005 with the writer thread, "
            "which cannot (they share one interpreter lock), so waiting lets concurrent requests share one fsync."
        ),
    )

    def group_wait_seconds(self) -> float:
        """``group_commit_max_wait_seconds``, or its default for ``store_writer``."""
        if self.group_commit_max_wait_seconds is not None:
            return self.group_commit_max_wait_seconds
        return 0.0 if self.store_writer == "process" else 0.005

    write_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How long an ingestion request waits for its commit before answering 503 store_unavailable "
            "(seconds, default 30). The client retries; idempotency on (source, id) makes that safe."
        ),
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(FULL|NORMAL|EXTRA)$",
        description=(
            "SQLite PRAGMA synchronous (default FULL). FULL fsyncs the WAL at every commit, so a 2xx survives a "
            "power cut; group commit keeps that to one fsync per group of requests. NORMAL is faster but a crash of "
            "the machine may lose the last acknowledged commits, which would break the API's promise."
        ),
    )
    store_writer: Literal["process", "thread"] = Field(
        default="process",
        description=(
            "Where the store's single writer runs (default process). `process`: a child process of its own "
            "(`store/writer_process.py`), with the projector in a child process of the writer "
            "(`store/projector_process.py`), so parsing, committing and projecting each have an interpreter lock of "
            "their own; the answer to a write still waits for its commit. `thread`: the writer and the projector "
            "are threads of the server process (one process, lower throughput under load)."
        ),
    )
    projector_enabled: bool = Field(
        default=True,
        description=(
            "Run a projector in this replica (default true). Exactly one replica per database projects at a time "
            "(a lease); the others stand by and take over within projector_lease_seconds when it stops."
        ),
    )
    projector_batch_events: int = Field(
        default=5000, gt=0, le=100_000,
        description="Log events folded per projection transaction at most (default 5000).",
    )
    projector_defer_seconds: float = Field(
        default=2.0, ge=0, le=300,
        description=(
            "SQLite: while appends keep coming and the projection is more than a batch behind (a burst), the "
            "projector leaves the write lock to the appender until the oldest event it has not projected has waited "
            "this long (seconds, default 2; 0: it never defers), then works without deferring until it has caught up. "
            "Only a burst that began within this long defers: under a steady load the projector never waits. "
            "A burst is accepted at what the appender alone allows for that long, then at the rate both share; "
            "a longer budget trades sustained throughput for it (docs/performance.md)."
        ),
    )
    projector_poll_seconds: float = Field(
        default=0.5, gt=0, le=60,
        description=(
            "How often an idle projector looks for events other replicas appended (seconds, default 0.5); "
            "appends of its own replica wake it at once."
        ),
    )
    projector_lease_seconds: float = Field(
        default=5.0, gt=0, le=300,
        description=(
            "How long a projector's lease lasts without a heartbeat (seconds, default 5; heartbeats come every "
            "second): a standby takes over this long after the projecting replica died."
        ),
    )
    read_wait_max_seconds: float = Field(
        default=10.0, ge=0, le=60,
        description=(
            "The longest a read with ?min_position= (or an Outrider-Min-Position header) waits for the projection "
            "to reach that log position before answering 503 projection_lagging (seconds, default 10)."
        ),
    )
    sse_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Period of the keep-alive comment on GET /v1/events/stream (seconds, default 15), for proxies.",
    )
    sse_queue_events: int = Field(
        default=1000,
        gt=0,
        description=(
            "Events buffered per stream subscriber (default 1000). A client that falls this far behind is "
            "disconnected rather than slowing the writer; it reconnects with Last-Event-ID and catches up."
        ),
    )

    retention_days: float | None = Field(
        default=None,
        ge=1,
        description=(
            "Delete events (run.log lines and every other type) whose time is older than this many days "
            "(default: unset, keep everything; at least 1: budgets read the last 24 h of the log). Only events the "
            "projector has folded are deleted. The projections (run records, the counters behind /metrics, the "
            "model and spend rollups) are never deleted, so no total drops. After a sweep, GET /v1/events, run "
            "logs and breaker trips in trends no longer cover the deleted period, `outrider store rebuild` needs "
            "--force, and an event re-sent after its copy was swept is stored (and counted) again."
        ),
    )
    retention_sweep_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often the retention sweep runs when retention_days is set (seconds, default 3600); the first runs at start.",
    )

    otlp_endpoint: str | None = Field(
        default=None,
        description=(
            "OTLP/HTTP traces URL (e.g. http://otel-collector:4318/v1/traces). When set, every finished run is "
            "exported as one trace (root span, a span per stage, a span per LLM call; see docs/opentelemetry.md) "
            "by a background task; needs the otel extra. Default: unset, nothing is exported."
        ),
    )

    def tokens(self) -> list[str]:
        """Every accepted token: ``api_tokens`` plus the lines of ``api_token_file`` (if it exists)."""
        found = [token.strip() for token in self.api_tokens.split(",") if token.strip()]
        if self.api_token_file is not None and self.api_token_file.is_file():
            for line in self.api_token_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(line)
        return found

    def operator_token_list(self) -> list[str]:
        return [token.strip() for token in self.operator_tokens.split(",") if token.strip()]

    def signing_keys(self) -> list[bytes]:
        """The run signing keys (``run_signing_keys`` then the file's); ValueError if one is too short."""
        from outrider.common import credentials

        text = self.run_signing_keys.replace(",", "\n")
        if self.run_signing_keys_file is not None and self.run_signing_keys_file.is_file():
            text += "\n" + self.run_signing_keys_file.read_text(encoding="utf-8")
        return credentials.load_keys(text)

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None when the store is not a SQLite file (PostgreSQL, in-memory)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
