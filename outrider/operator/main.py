"""Start the operator in-process: kopf on the module ``outrider.operator.handlers`` (never a script path).

``outrider operator`` (outrider/cli/servers.py) calls :func:`run`; tests call :func:`serve` in a thread with their
own stop flag, so the process they exercise is the one production runs. Peering: with ``--peering NAME`` (the
default when the chart runs two replicas) kopf elects one active replica through a KopfPeering object and pauses
the other — every handler, index-driven daemon and write stops on the standby; ``--standalone`` disables it.
kopf pauses *all* replicas that share the highest priority, so replicas of one Deployment must not share it:
without ``--priority`` each process picks a random one (the highest live one acts; when it goes, the next resumes).
"""

from __future__ import annotations

import asyncio
import importlib
import random
from typing import Any

HANDLERS_MODULE = "outrider.operator.handlers"


def _kwargs(namespace: str | None, liveness: str | None, peering: str | None, standalone: bool,
            priority: int | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"liveness_endpoint": liveness or None}
    if namespace:
        kwargs["namespaces"] = [namespace]
    else:
        kwargs["clusterwide"] = True
    if standalone:
        kwargs["standalone"] = True
    elif peering:
        kwargs["peering_name"] = peering
        kwargs["priority"] = priority if priority is not None else random.randint(1, 2**31 - 1)
    return kwargs


async def serve(*, namespace: str | None = None, liveness: str | None = None, peering: str | None = None,
                standalone: bool = False, priority: int | None = None, stop_flag: Any = None,
                ready_flag: Any = None) -> None:
    """Run the operator until ``stop_flag`` is set (or the process is signalled)."""
    import kopf

    importlib.import_module(HANDLERS_MODULE)  # registers the handlers, like `kopf run -m`
    await kopf.operator(memo=kopf.Memo(), stop_flag=stop_flag, ready_flag=ready_flag,
                        **_kwargs(namespace, liveness, peering, standalone, priority))


def run(*, namespace: str | None = None, liveness: str | None = None, peering: str | None = None,
        standalone: bool = False, priority: int | None = None) -> None:
    """The blocking entry point of ``outrider operator``."""
    import logging

    import kopf

    kopf.configure(verbose=False, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve(namespace=namespace, liveness=liveness, peering=peering, standalone=standalone,
                      priority=priority))
