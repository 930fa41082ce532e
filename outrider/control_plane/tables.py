"""The store's SQLAlchemy Core tables: the durable event history, the folded run records, and aggregates.

These are storage shapes, separate from the API models in ``schemas.py`` on purpose. Alembic migrations
in ``migrations/`` create them; this module is the reference the migrations and queries are written
against. Times are ``TIMESTAMP WITH TIME ZONE`` (SQLite stores UTC text without offset; the store
reattaches UTC when reading).

- ``events``: every accepted event once, in arrival order (``seq``), unique on (source, event_id).
- ``runs``: one row per (namespace, run id), the projection of its events (columns for queries, ``state`` JSON for the rest).
- ``llm_calls``: one row per LLM call (the analytics of ``/v1/analytics/models``).
- ``agg_*``: small counters kept in the same transaction as the events, read by ``/metrics`` so a scrape
  never scans the event history (``agg_runs`` / ``agg_run_durations``: see ``run_aggregates``).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: An integer primary key that autoincrements on SQLite (AUTOINCREMENT: never reused) and PostgreSQL (BIGINT).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("type", sa.String(256), nullable=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("target", sa.String(253), nullable=True),
    sa.Column("run_id", sa.String(253), nullable=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False, server_default="default", comment="Kubernetes namespace (tenant); 'default' for events that named none."),
    sa.Column("body", sa.Text(), nullable=False, comment="The event as accepted, JSON."),
    sa.UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
    sa.Index("ix_events_run_id_seq", "run_id", "seq"),
    sa.Index("ix_events_target_seq", "target", "seq"),
    sa.Index("ix_events_type_seq", "type", "seq"),
    sa.Index("ix_events_time", "time"),
    sa.Index("ix_events_type_time", "type", "time"),
    sqlite_autoincrement=True,
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True, comment="Kubernetes namespace (tenant): a run is (namespace, run_id)."),
    sa.Column("run_id", sa.String(253), primary_key=True),
    sa.Column("target", sa.String(253), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("started_at", Time, nullable=True),
    sa.Column("completed_at", Time, nullable=True),
    sa.Column("duration_seconds", sa.Float(), nullable=True),
    sa.Column("error_summary", sa.String(512), nullable=True),
    sa.Column("error_type", sa.String(256), nullable=True),
    sa.Column("error_stage", sa.String(128), nullable=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True, comment="Cost in 1e-9 USD; exact sums in any order."),
    sa.Column("llm_calls", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("pr_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("event_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_event_at", Time, nullable=True),
    sa.Column("updated_seq", sa.BigInteger(), nullable=False, comment="seq of the last event folded in."),
    sa.Column("state", sa.Text(), nullable=False, comment="projection.RunState as JSON: the mergeable fold state."),
    sa.Index("ix_runs_target_created_at_run_id", "target", "created_at", "run_id"),
    # Also covers /v1/runs/summary (totals by status, durations, the latest failure) without reading the rows,
    # whose state JSON makes them ~1 KB each: see migration 0005.
    sa.Index(
        "ix_runs_status_created_at_run_id_cover", "status", "created_at", "run_id", "duration_seconds", "input_tokens",
        "output_tokens", "cost_nano_usd", "pr_count", "completed_at",
    ),
    sa.Index("ix_runs_created_at_run_id", "created_at", "run_id"),
    sa.Index("ix_runs_started_at", "started_at"),
    sa.Index("ix_runs_completed_at", "completed_at"),
)

agg_event_types = sa.Table(
    "agg_event_types",
    metadata,
    sa.Column("type", sa.String(256), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
)

agg_rejections = sa.Table(
    "agg_rejections",
    metadata,
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
)

agg_llm = sa.Table(
    "agg_llm",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
)

agg_prs = sa.Table(
    "agg_prs",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
    sa.Column("created", sa.BigInteger(), nullable=False),
)

agg_runs = sa.Table(
    "agg_runs",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the run has no target."),
    sa.Column("status", sa.String(16), primary_key=True, comment="A terminal status."),
    sa.Column("count", sa.BigInteger(), nullable=False),
    comment="Finished runs by target and status, kept as deltas by run_aggregates (read by /metrics).",
)

agg_run_durations = sa.Table(
    "agg_run_durations",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the run has no target."),
    sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False,
              comment="Index into run_aggregates.DURATION_BUCKETS of the first bound >= the duration."),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("sum_micros", sa.BigInteger(), nullable=False, comment="Sum of the durations in microseconds (exact)."),
    comment="Finished runs with a duration, by target and histogram bucket, kept by run_aggregates (read by /metrics).",
)

llm_calls = sa.Table(
    "llm_calls",
    metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False, comment="seq of the run.llm_usage event."),
    sa.Column("time", Time, nullable=False),
    sa.Column("target", sa.String(253), nullable=True),
    sa.Column("run_id", sa.String(253), nullable=False),
    sa.Column("provider", sa.String(128), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=True),
    sa.Column("latency_s", sa.Float(), nullable=True),
    sa.Column("error", sa.Boolean(), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False, server_default="default", comment="Kubernetes namespace (tenant); 'default' for events that named none."),
    # Covers the budgets' spend sums (time range, grouped by target): see migration 0005.
    sa.Index("ix_llm_calls_time_target_cost", "time", "target", "cost_nano_usd"),
    sa.Index("ix_llm_calls_target_time", "target", "time"),
    comment="One row per run.llm_usage event, for /v1/analytics/models; written with the event, swept with it.",
)

store_probe = sa.Table(
    "store_probe",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("written_at", Time, nullable=False),
    comment="One row rewritten by readiness probes after a failed commit: proves commits work again.",
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True, comment="The public part of the key (otk_<key_id>_<secret>)."),
    sa.Column("name", sa.String(256), nullable=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False, comment="SHA-256 of the whole key; the key itself is never stored."),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("namespaces", sa.Text(), nullable=True, comment="JSON list; null: every namespace."),
    sa.Column("targets", sa.Text(), nullable=True, comment="JSON list; null: every target."),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("expires_at", Time, nullable=True),
    sa.Column("revoked_at", Time, nullable=True),
    comment="API keys with a role and optional tenant bounds; see outrider.control_plane.keys.",
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("time", Time, nullable=False),
    sa.Column("actor", sa.String(64), nullable=True, comment="Key id (or token / run credential) of who acted; null: nobody authenticated."),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(64), nullable=False, comment="e.g. key.created, key.revoked, event.control, write.refused, login.failed."),
    sa.Column("object", sa.String(512), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False, comment="ok or refused."),
    sa.Column("remote", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True, comment="JSON."),
    sa.Index("ix_audit_log_time", "time"),
    sqlite_autoincrement=True,
    comment="Who did what to the trust boundary; read by GET /v1/audit (admin); swept after audit_retention_days.",
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("session_sha256", sa.String(64), primary_key=True, comment="SHA-256 of the cookie's random session id."),
    sa.Column("key_id", sa.String(64), nullable=False, comment="The key that logged in (revoking it ends the session)."),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=True),
    comment="Server-side console sessions: the cookie holds a random id, never the API key.",
)
