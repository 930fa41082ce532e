"""A Kubernetes API emulator (KMock) on 127.0.0.1 in a background thread, with Outrider's CRDs declared.

KMock is looser than a real API server, so :class:`Emulator` fills in what a server sets on create (namespace,
uid, creationTimestamp, generation, resourceVersion): the operator relies on them as on a real cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import threading
import uuid
from pathlib import Path
from typing import Any

from outrider.common import k8s

_versions = itertools.count(1)


def fill_server_metadata(request: Any) -> None:
    """On a create, set what a real API server sets (namespace, name from generateName, uid, timestamps, versions)."""
    from kmock._internal import enums

    if request.resource is None or request.action != enums.action.CREATE or not isinstance(request.data, dict):
        return
    meta = request.data.setdefault("metadata", {})
    if request.namespace and not meta.get("namespace"):
        meta["namespace"] = request.namespace
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
    meta.setdefault("generation", 1)
    meta["resourceVersion"] = str(next(_versions))


def _emulator_class() -> Any:
    import kmock

    class Emulator(kmock.KubernetesEmulator):
        async def _handle(self, request: Any) -> Any:
            fill_server_metadata(request)
            return await super()._handle(request)

    return Emulator


class Cluster:
    """KMock serving on a free port until :meth:`close`; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="demo-kmock", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"the Kubernetes API emulator did not start: {self._error!r}")

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by __init__ when it happens before ready
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        import kmock
        from kmock._internal import apps

        self._stop = asyncio.Event()
        async with _emulator_class()() as emulator, apps.Server(emulator) as server:
            emulator.resources.load_bundled()
            for plural, kind in ((k8s.RUN_PLURAL, k8s.RUN_KIND), (k8s.TARGET_PLURAL, k8s.TARGET_KIND)):
                emulator.resources[f"{k8s.GROUP}/{k8s.VERSION}/{plural}"] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, subresources={"status"},
                    verbs={"get", "list", "watch", "patch", "create", "delete", "update"})
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def write_kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig for the emulator (any token is accepted), for the operator and `outrider autonomy`."""
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: outrider-demo\n"
            f'clusters: [{{name: outrider-demo, cluster: {{server: "{self.url}"}}}}]\n'
            "users: [{name: demo, user: {token: demo}}]\n"
            f"contexts: [{{name: outrider-demo, context: {{cluster: outrider-demo, user: demo, namespace: {namespace}}}}}]\n",
            encoding="utf-8",
        )
        return path

    def close(self) -> None:
        if self._thread.is_alive() and hasattr(self, "_stop"):
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
