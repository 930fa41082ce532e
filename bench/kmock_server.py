"""``python -m bench.kmock_server``: the test suite's KMock API server in a process of its own.

The operator benchmark runs the API server, the operator and the measuring client as three processes,
so none of them shares a GIL (or a core's time slice) with another and each one's CPU can be read
separately. The emulator is the test harness's (``tests/operator/operator_harness.KMock``: the fields a
real API server sets on create) with the same resources declared, plus one change for scale: KMock
answers GET/PATCH/DELETE of one object by scanning every stored object (``__get_obj``), which at
thousands of Runs, Jobs and Kubernetes Events makes the emulator, not the operator, the bottleneck;
``IndexedKMock`` looks the object up by its key instead (same answer, O(1)), falling back to KMock's
own code when the key is not found. Prints ``URL <url>`` once serving; stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import kmock
from kmock._internal import apps

from outrider.common import k8s
from tests.operator import operator_harness


class IndexedKMock(operator_harness.KMock):
    """The harness's KMock with direct key lookups for single-object requests."""

    def _lookup(self, request: Any, name: str | None, namespace: str | None) -> Any:
        objects = getattr(self._objects, "_objects", None)
        if objects is None or request.resource is None or name is None:
            return None
        found = objects.get((request.resource, namespace, name))
        return None if found is None or found.deleted else found

    async def _serve_fetch(self, request: Any) -> Any:
        found = self._lookup(request, request.name, request.namespace)
        return found.raw if found is not None else await super()._serve_fetch(request)

    async def _serve_update(self, request: Any) -> Any:
        found = self._lookup(request, request.name, request.namespace)
        return found.last.raw if found is not None else await super()._serve_update(request)

    async def _serve_create(self, request: Any) -> Any:
        meta = (request.data or {}).get("metadata", {}) if isinstance(request.data, dict) else {}
        found = self._lookup(request, request.name or meta.get("name"), request.namespace or meta.get("namespace"))
        return found.raw if found is not None else await super()._serve_create(request)


async def serve() -> None:
    async with IndexedKMock() as emulator, apps.Server(emulator) as server:
        emulator.resources.load_bundled()
        for plural, kind in ((k8s.RUN_PLURAL, k8s.RUN_KIND), (k8s.TARGET_PLURAL, k8s.TARGET_KIND)):
            emulator.resources[f"{k8s.GROUP}/{k8s.VERSION}/{plural}"] = kmock.ResourceInfo(
                kind=kind,
                namespaced=True,
                subresources={"status"},
                verbs={"get", "list", "watch", "patch", "create", "delete", "update"},
            )
        print(f"URL {str(server.url).rstrip('/')}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
