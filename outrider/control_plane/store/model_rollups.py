"""Per-model LLM rollup rows since an hour, summed over namespaces and targets: what ``model_metrics`` turns into
each model's recent and baseline windows. Here so that the collector never composes SQL itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from outrider.control_plane import tables

if TYPE_CHECKING:
    from outrider.control_plane.store import Store


def hours_since(source: Store, first_hour: int) -> tuple[list[Any], list[Any]]:
    """``(model, hour, calls, errors)`` rows and ``(model, hour, bucket, count)`` latency rows from ``first_hour``
    on; :class:`~outrider.control_plane.store.StoreUnavailable` when the store cannot be read."""
    r, lat = tables.rollup_llm_all, tables.rollup_llm_latency_all
    with source.reading() as conn:
        calls = conn.execute(sa.select(r.c.model, r.c.hour, sa.func.sum(r.c.calls), sa.func.sum(r.c.errors))
                             .where(r.c.hour >= first_hour).group_by(r.c.model, r.c.hour)).all()
        latencies = conn.execute(sa.select(lat.c.model, lat.c.hour, lat.c.bucket, sa.func.sum(lat.c.count))
                                 .where(lat.c.hour >= first_hour).group_by(lat.c.model, lat.c.hour, lat.c.bucket)).all()
    return list(calls), list(latencies)
