"""The store's SQLAlchemy Core tables: the durable event history, the folded run records, and aggregates.

These are storage shapes, separate from the API models in ``schemas.py`` on purpose. Alembic migrations
in ``migrations/`` create them; this module is the reference the migrations and queries are written
against. Times are ``TIMESTAMP WITH TIME ZONE`` (SQLite stores UTC text without offset; the store
reattaches UTC when reading).

- ``events``: every accepted event once, in arrival order (``seq``), unique on (source, event_id).
- ``runs``: one row per (namespace, run id), the projection of its events (columns for queries, ``state`` JSON for the rest).
- ``projector_state``: the projector's checkpoint and lease (see ``store.projector``).
- ``rollup_*``, ``run_models``: LLM calls rolled up per hour (models) and minute (budgets): see ``store.rollups``;
  runs per hour and day (trends, errors): see ``store.run_rollups``. A ``*_all`` table is its twin summed over
  targets, read when no target narrows the question.
- ``namespace_usage``: events and bytes each namespace keeps in the log (its storage quota: ``quota.py``).
- ``agg_*``: small counters the projector keeps with the runs, read by ``/metrics`` so a scrape
  never scans the event history (``agg_runs`` / ``agg_run_durations``: see ``run_aggregates``).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: An integer primary key that autoincrements on SQLite (AUTOINCREMENT: never reused) and PostgreSQL (BIGINT).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)

#: The event log: what ``POST /v1/events`` appends before it answers, one row per accepted request (its new events
#: as one JSON array, in the order sent). Events are numbered in the log: a row holds ``seq``..``last_seq``, its
#: events in body order without the ``skip`` ones (duplicates of events stored before). ``events`` below is the
#: projector's per-event index of it.
event_log = sa.Table(
    "event_log",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=False, comment="The seq of the row's first new event."),
    sa.Column("last_seq", BigId, nullable=False, comment="The seq of its last new event."),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("body", sa.Text(), nullable=False, comment="The request's events as accepted: a JSON array."),
    sa.Column("skip", sa.Text(), nullable=True, comment="JSON array of body indexes that were duplicates; null: none."),
)

#: (source, id) of every event in the log: the idempotency key, checked as events are appended.
event_keys = sa.Table(
    "event_keys",
    metadata,
    sa.Column("source", sa.String(1024), primary_key=True),
    sa.Column("event_id", sa.String(256), primary_key=True),
    sqlite_with_rowid=False,
)

#: The log's last seq (one row): seqs are never reused, even after retention emptied the log.
event_log_head = sa.Table(
    "event_log_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False, comment="Always 1."),
    sa.Column("seq", BigId, nullable=False),
)

#: Every event of the log, one row each, written by the projector (it lags the log like the run records do).
events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=False),
    sa.Column("source", sa.String(1024), nullable=False),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("type", sa.String(256), nullable=False),
    sa.Column("time", Time, nullable=False),
    sa.Column("target", sa.String(253), nullable=True),
    sa.Column("run_id", sa.String(253), nullable=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("body", sa.Text(), nullable=False, comment="The event as accepted, JSON."),
    sa.Column("namespace", sa.String(63), nullable=False, server_default="default", comment="Kubernetes namespace (tenant); 'default' for events that named none."),
    sa.Index("ix_events_run_id_seq", "run_id", "seq"),
    sa.Index("ix_events_target_seq", "target", "seq"),
    sa.Index("ix_events_type_seq", "type", "seq"),
    sa.Index("ix_events_time", "time"),
    sa.Index("ix_events_type_time", "type", "time"),
    # No AUTOINCREMENT (migration 0011 rebuilt the table without it): seq is the log's, inserted as it is.
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

projector_state = sa.Table(
    "projector_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False, comment="Always 1: one projector per database."),
    sa.Column("position", sa.BigInteger(), nullable=False, comment="seq of the last event projected (the checkpoint)."),
    sa.Column("version", sa.BigInteger(), nullable=False, comment="+1 with every projection write: fences a projector working from stale reads."),
    sa.Column("holder", sa.String(128), nullable=True, comment="The projector holding the lease (host:pid:random)."),
    sa.Column("heartbeat_at", sa.Float(), nullable=True, comment="Unix time of the holder's last heartbeat; the lease lapses projector_lease_seconds later."),
    sa.Column("projected_at", sa.Float(), nullable=True, comment="Unix time of the last projection write."),
    sa.Column("swept_through", sa.BigInteger(), nullable=False, server_default="0",
              comment="Highest seq a retention sweep deleted: a rebuild from the log cannot reproduce what came before."),
    comment="The projector's checkpoint, written in the same transaction as the projection rows it covers.",
)

rollup_llm = sa.Table(
    "rollup_llm",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False, comment="Unix time // 3600 of the calls."),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("calls", sa.BigInteger(), nullable=False),
    sa.Column("errors", sa.BigInteger(), nullable=False),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
    sa.Column("priced", sa.BigInteger(), nullable=False, comment="Calls that reported a cost."),
    sa.Index("ix_rollup_llm_target_hour", "target", "hour"),
    comment="LLM calls per hour and model: /v1/analytics/models reads this, never the calls.",
)

rollup_llm_latency = sa.Table(
    "rollup_llm_latency",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False, comment="store.rollups.latency_bucket of the latency."),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Index("ix_rollup_llm_latency_target_hour", "target", "hour"),
    comment="Latency histogram per hour and model (fixed buckets; see store.rollups for the error bound).",
)

rollup_llm_all = sa.Table(
    "rollup_llm_all",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    *(sa.Column(name, sa.BigInteger(), nullable=False) for name in ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced")),
    comment="rollup_llm summed over targets: what /v1/analytics/models reads when no target narrows it (a 200th of the rows at 200 targets).",
)

rollup_llm_latency_all = sa.Table(
    "rollup_llm_latency_all",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    comment="rollup_llm_latency summed over targets.",
)

rollup_spend = sa.Table(
    "rollup_spend",
    metadata,
    sa.Column("minute", sa.Integer(), primary_key=True, autoincrement=False, comment="Unix time // 60 of the calls."),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the event has no target."),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
    sa.Index("ix_rollup_spend_namespace_target_minute", "namespace", "target", "minute"),
    comment="Priced LLM spend per minute: what budgets sum over their windows.",
)

rollup_runs = sa.Table(
    "rollup_runs",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False, comment="Unix time // 3600 of the axis' time."),
    sa.Column("axis", sa.String(16), primary_key=True, comment="created, started or completed: which of the run's times (store.run_rollups)."),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="'' when the run has no target."),
    sa.Column("status", sa.String(16), primary_key=True, comment="'' on the started axis."),
    sa.Column("error_type", sa.String(256), primary_key=True, comment="'' when none (created axis only)."),
    sa.Column("error_stage", sa.String(128), primary_key=True, comment="'' when none (created axis only)."),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("tokens", sa.BigInteger(), nullable=False, comment="Input + output tokens."),
    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False),
    sa.Column("priced", sa.BigInteger(), nullable=False, comment="Runs with a cost."),
    sa.Column("prs", sa.BigInteger(), nullable=False),
    sa.Index("ix_rollup_runs_target_hour", "target", "hour"),
    comment="Runs per hour of creation, start and completion, kept as deltas by the projector: trends and error analytics.",
)


def _run_numbers() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in ("count", "tokens", "cost_nano_usd", "priced", "prs")]


def _run_kinds() -> list[sa.Column[str]]:
    return [sa.Column("status", sa.String(16), primary_key=True), sa.Column("error_type", sa.String(256), primary_key=True),
            sa.Column("error_stage", sa.String(128), primary_key=True)]


rollup_runs_all = sa.Table(
    "rollup_runs_all",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("axis", sa.String(16), primary_key=True),
    sa.Column("namespace", sa.String(63), primary_key=True),
    *_run_kinds(),
    *_run_numbers(),
    comment="rollup_runs summed over targets: trends and error analytics when no target narrows them.",
)

rollup_runs_day = sa.Table(
    "rollup_runs_day",
    metadata,
    sa.Column("day", sa.Integer(), primary_key=True, autoincrement=False, comment="Unix time // 86400 of the axis' time."),
    sa.Column("axis", sa.String(16), primary_key=True),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True),
    *_run_kinds(),
    *_run_numbers(),
    comment="rollup_runs per day: long windows read whole days here, only the hours of their first day from rollup_runs.",
)

namespace_usage = sa.Table(
    "namespace_usage",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("events", sa.BigInteger(), nullable=False, comment="Events of the namespace in the log."),
    sa.Column("bytes", sa.BigInteger(), nullable=False, comment="Their stored size (the events' JSON, in bytes)."),
    comment=(
        "What each namespace keeps in the log, for its storage quota: added by the projector as it covers events, "
        "subtracted by the retention sweep as it deletes them."
    ),
)

run_models = sa.Table(
    "run_models",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("run_id", sa.String(253), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("target", sa.String(253), nullable=True),
    sa.Column("first_hour", sa.Integer(), nullable=False, comment="Hour (unix time // 3600) of the run's first call to the model."),
    sa.Index("ix_run_models_first_hour", "first_hour"),
    comment="Which runs used which models: how the runs that used a model ended, without reading every call.",
)

rollup_model_runs = sa.Table(
    "rollup_model_runs",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False, comment="run_models.first_hour."),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("target", sa.String(253), primary_key=True, comment="run_models.target; '' when none."),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True, comment="The run's status now; '' for a run without a record."),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Index("ix_rollup_model_runs_target_hour", "target", "hour"),
    comment="run_models counted per first hour and the run's status, kept as deltas: how the runs that used a model ended.",
)

rollup_model_runs_all = sa.Table(
    "rollup_model_runs_all",
    metadata,
    sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("provider", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    comment="rollup_model_runs summed over targets.",
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


#: Everything the projector derives from the log (a rebuild empties and refills these).
PROJECTIONS = (events, runs, agg_event_types, agg_llm, agg_prs, agg_runs, agg_run_durations, rollup_llm,
               rollup_llm_latency, rollup_spend, run_models, rollup_runs, rollup_llm_all, rollup_llm_latency_all,
               namespace_usage, rollup_runs_all, rollup_runs_day, rollup_model_runs, rollup_model_runs_all)
#: What the projector writes: the projections and its checkpoint, which moves in the same transaction. On SQLite
#: they live in the projections file (``store.engine.projections_file``); everything else in the log's.
PROJECTOR_TABLES = (*PROJECTIONS, projector_state)
