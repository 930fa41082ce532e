"""The event log and its projector: checkpoint and lease, LLM rollups instead of one row per call.

Adds ``projector_state`` (one row: the checkpoint the projector writes with the rows it covers), the rollups
``rollup_llm``, ``rollup_llm_latency`` (and both summed over targets), ``rollup_spend``, ``run_models`` and
``rollup_runs``, and drops
``llm_calls``. ``rollup_runs`` is filled from the run records.

Existing databases: until this revision every event was folded when it was committed, so the projections
are current and the checkpoint starts at the last stored seq. The rollups are filled from ``llm_calls`` (the
calls a retention sweep had not deleted) before it is dropped; afterwards ``outrider store rebuild`` gives
the same rollups from the log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from outrider.control_plane import projection
from outrider.control_plane.store import rollups, run_rollups

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)
KEY = ("hour", "namespace", "target", "provider", "model")


def _tables() -> None:
    op.create_table(
        "projector_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("projected_at", sa.Float(), nullable=True),
        sa.Column("swept_through", sa.BigInteger(), nullable=False, server_default="0"),
    )
    def names() -> list[sa.Column[Any]]:
        return [sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
                sa.Column("namespace", sa.String(63), primary_key=True), sa.Column("target", sa.String(253), primary_key=True),
                sa.Column("provider", sa.String(128), primary_key=True), sa.Column("model", sa.String(256), primary_key=True)]

    op.create_table("rollup_llm", *names(), *(sa.Column(n, sa.BigInteger(), nullable=False) for n in
                                            ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced")))
    op.create_table("rollup_llm_latency", *names(), sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column("count", sa.BigInteger(), nullable=False))
    op.create_table("rollup_llm_all", *(c for c in names() if c.name != "target"),
                    *(sa.Column(n, sa.BigInteger(), nullable=False) for n in ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced")))
    op.create_table("rollup_llm_latency_all", *(c for c in names() if c.name != "target"),
                    sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False), sa.Column("count", sa.BigInteger(), nullable=False))
    op.create_table("rollup_spend", sa.Column("minute", sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column("namespace", sa.String(63), primary_key=True), sa.Column("target", sa.String(253), primary_key=True),
                    sa.Column("cost_nano_usd", sa.BigInteger(), nullable=False))
    op.create_index("ix_rollup_spend_namespace_target_minute", "rollup_spend", ["namespace", "target", "minute"])
    op.create_table("run_models", sa.Column("namespace", sa.String(63), primary_key=True), sa.Column("run_id", sa.String(253), primary_key=True),
                    sa.Column("provider", sa.String(128), primary_key=True), sa.Column("model", sa.String(256), primary_key=True),
                    sa.Column("target", sa.String(253), nullable=True), sa.Column("first_hour", sa.Integer(), nullable=False))
    op.create_index("ix_run_models_first_hour", "run_models", ["first_hour"])
    op.create_table("rollup_runs", sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
                    sa.Column("axis", sa.String(16), primary_key=True), sa.Column("namespace", sa.String(63), primary_key=True),
                    sa.Column("target", sa.String(253), primary_key=True), sa.Column("status", sa.String(16), primary_key=True),
                    sa.Column("error_type", sa.String(256), primary_key=True), sa.Column("error_stage", sa.String(128), primary_key=True),
                    *(sa.Column(n, sa.BigInteger(), nullable=False) for n in run_rollups.NUMBERS))


def upgrade() -> None:
    _tables()
    bind = op.get_bind()
    head = bind.execute(sa.text("SELECT max(seq) FROM events")).scalar() or 0
    bind.execute(sa.text("INSERT INTO projector_state (id, position, version, swept_through) VALUES (1, :head, 0, 0)"), {"head": head})
    calls = sa.table("llm_calls", *(sa.column(n) for n in ("time", "namespace", "target", "run_id", "provider", "model", "input_tokens",
                                                            "output_tokens", "cost_nano_usd", "latency_s", "error")))
    hours: dict[tuple[int, str, str, str, str], list[int]] = {}
    latency: collections.Counter[tuple[int, str, str, str, str, int]] = collections.Counter()
    spend: collections.Counter[tuple[int, str, str]] = collections.Counter()
    used: dict[tuple[str, str, str, str], tuple[str | None, int]] = {}
    for row in bind.execute(sa.select(calls)):
        moment = row.time if isinstance(row.time, datetime) else datetime.fromisoformat(str(row.time))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # SQLite keeps UTC without an offset
        epoch = moment.timestamp()
        hour, namespace, target = rollups.hour_of(epoch), row.namespace or "default", row.target or ""
        cell = hours.setdefault((hour, namespace, target, row.provider, row.model), [0, 0, 0, 0, 0, 0])
        cell[0] += 1
        cell[1] += 1 if row.error else 0
        cell[2] += int(row.input_tokens)
        cell[3] += int(row.output_tokens)
        if row.cost_nano_usd is not None:
            cell[4] += int(row.cost_nano_usd)
            cell[5] += 1
            spend[(rollups.minute_of(epoch), namespace, target)] += int(row.cost_nano_usd)
        if row.latency_s is not None:
            latency[(hour, namespace, target, row.provider, row.model, rollups.latency_bucket(float(row.latency_s)))] += 1
        key = (namespace, row.run_id, row.provider, row.model)
        if key not in used or hour < used[key][1]:
            used[key] = (row.target, hour)
    numbers = ("calls", "errors", "input_tokens", "output_tokens", "cost_nano_usd", "priced")
    if hours:
        op.bulk_insert(sa.table("rollup_llm", *(sa.column(n) for n in KEY + numbers)),
                       [dict(zip(KEY + numbers, (*k, *v), strict=True)) for k, v in hours.items()])
    if latency:
        op.bulk_insert(sa.table("rollup_llm_latency", *(sa.column(n) for n in (*KEY, "bucket", "count"))),
                       [dict(zip((*KEY, "bucket", "count"), (*k, v), strict=True)) for k, v in latency.items()])
    everywhere = rollups.over_targets(hours)
    latency_everywhere = rollups.over_targets(latency)
    all_key = ("hour", "namespace", "provider", "model")
    if everywhere:
        op.bulk_insert(sa.table("rollup_llm_all", *(sa.column(n) for n in all_key + numbers)),
                       [dict(zip(all_key + numbers, (*k, *v), strict=True)) for k, v in everywhere.items()])
    if latency_everywhere:
        op.bulk_insert(sa.table("rollup_llm_latency_all", *(sa.column(n) for n in (*all_key, "bucket", "count"))),
                       [dict(zip((*all_key, "bucket", "count"), (*k, v), strict=True)) for k, v in latency_everywhere.items()])
    if spend:
        op.bulk_insert(sa.table("rollup_spend", *(sa.column(n) for n in ("minute", "namespace", "target", "cost_nano_usd"))),
                       [{"minute": m, "namespace": n, "target": t, "cost_nano_usd": c} for (m, n, t), c in spend.items()])
    if used:
        op.bulk_insert(sa.table("run_models", *(sa.column(n) for n in ("namespace", "run_id", "provider", "model", "target", "first_hour"))),
                       [{"namespace": k[0], "run_id": k[1], "provider": k[2], "model": k[3], "target": t, "first_hour": h}
                        for k, (t, h) in used.items()])
    op.drop_table("llm_calls")
    runs = sa.table("runs", sa.column("namespace"), sa.column("run_id"), sa.column("state"))
    changes = [(None, projection.columns(run_id, json.loads(state), namespace)) for namespace, run_id, state in bind.execute(sa.select(runs))]
    rows = run_rollups.deltas(changes)
    if rows:
        names = run_rollups.KEY + run_rollups.NUMBERS
        op.bulk_insert(sa.table("rollup_runs", *(sa.column(n) for n in names)), [dict(zip(names, row, strict=True)) for row in rows])


def downgrade() -> None:
    """Back to one row per call; the calls themselves are gone (only their rollups were kept): llm_calls comes
    back empty and fills again with new calls."""
    op.create_table(
        "llm_calls",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
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
        sa.Column("namespace", sa.String(63), nullable=False, server_default="default"),
    )
    op.create_index("ix_llm_calls_time_target_cost", "llm_calls", ["time", "target", "cost_nano_usd"])
    op.create_index("ix_llm_calls_target_time", "llm_calls", ["target", "time"])
    for name in ("rollup_runs", "rollup_llm_latency_all", "rollup_llm_all", "run_models", "rollup_spend", "rollup_llm_latency", "rollup_llm", "projector_state"):
        op.drop_table(name)
