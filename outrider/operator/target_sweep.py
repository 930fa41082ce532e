"""Targets deleted while no operator ran. A Target carries no finalizer (handlers._without_finalizer), so it can go
while the operator is down, and then nobody posts its ``target.deleted``: the control plane would keep listing it.
At start the operator compares the control plane's Targets with the cluster's and posts ``target.deleted`` for each
one the cluster no longer has.

Order matters: the control plane is asked first, the cluster second. A Target created in between is not in the
first answer, so it is never taken for deleted; one deleted in between is missing from the second, and is."""

from __future__ import annotations

import logging

from outrider.common import events
from outrider.operator import control_plane_client, events_client, kube
from outrider.operator import runtime as runtime_mod

logger = logging.getLogger("outrider.operator.target_sweep")


async def forget_deleted_while_away(rt: runtime_mod.Runtime) -> list[tuple[str, str]]:
    """Post ``target.deleted`` for the control plane's Targets that the cluster no longer has; which ones."""
    known = await control_plane_client.known_targets(rt.settings.url, rt.settings.token,
                                                     timeout=rt.settings.budget_timeout_seconds)
    if not known:
        return []
    try:
        items = await rt.client.list(kube.targets())
    except (kube.ApiError, OSError) as exc:  # e.g. RBAC for one namespace only: then say nothing about any
        logger.info("cannot list Targets in all namespaces (%s); not looking for Targets deleted while away", exc)
        return []
    existing = {((item.get("metadata") or {}).get("namespace") or "default", (item.get("metadata") or {}).get("name") or "")
                for item in items}
    gone = sorted(known - existing)
    now = rt.clock()
    for namespace, name in gone:
        logger.info("Target %s/%s was deleted while no operator ran: telling the control plane", namespace, name)
        rt.emit(events_client.build(events.EventType.TARGET_DELETED, id_parts=(namespace, name, "away", now.isoformat()),
                                    time=now, target=name, subject=f"targets/{namespace}/{name}"))
    return gone
