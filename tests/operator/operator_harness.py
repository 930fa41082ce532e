"""Harness: the operator running for real against KMock (a Kubernetes API emulator on 127.0.0.1), plus helpers.

KMock runs in its own thread and event loop; the operator runs through ``outrider.operator.main.serve`` (the
same entry as ``outrider operator``) in another thread, logging in with a temporary kubeconfig that points at
KMock. Tests talk to KMock over plain HTTP like kubectl would, and poll with short intervals and bounded
timeouts. KMock is looser than a real API server, so the ``KMock`` subclass below fills in what a server sets on
create (namespace, uid, creationTimestamp, resourceVersion) — the operator relies on those as on a real cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp.web
import httpx
import kmock
from kmock._internal import apps, enums

from outrider.common import k8s
from outrider.demo import cluster as demo_cluster
from outrider.operator import kube
from outrider.operator import main as operator_main


class KMock(kmock.KubernetesEmulator):
    """KMock plus what a real API server does that the operator relies on.

    On create: the fields a server sets (and generateName). On every update: a new ``metadata.resourceVersion``
    (and the next ``metadata.generation`` when a merge patch changes ``spec``), and a merge patch carrying ``metadata.resourceVersion`` is refused with 409 Conflict when the object has
    changed since that version — the operator's Run status writes are checked against the version they carry,
    so without this precondition a write based on a stale view would go through here and not on a cluster.
    """

    #: Seconds to delay requests for a resource plural (e.g. {"pods": 1.0}): widens a race window on purpose.
    delays: dict[str, float]
    #: Precondition failures answered (409) so far: tests check the conflict path was taken.
    conflicts: int = 0

    async def _handle(self, request: Any) -> Any:
        delay = (getattr(self, "delays", None) or {}).get(getattr(request.resource, "plural", None) or "")
        if delay:
            await asyncio.sleep(delay)
        demo_cluster.fill_server_metadata(request)
        refused = self._versions_check(request)
        if refused:
            self.conflicts += 1
            reason = "Conflict" if refused == 409 else "Invalid"
            body = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": refused,
                    "message": "the object has been modified; please apply your changes to the latest version"}
            return aiohttp.web.json_response(body, status=refused)
        return await super()._handle(request)

    def _versions_check(self, request: Any) -> int | None:
        """Check an update's resourceVersion precondition and give the update the next version.

        A merge patch carrying ``metadata.resourceVersion`` that is no longer current gets 409 Conflict; a JSON
        patch whose ``test`` of ``/metadata/resourceVersion`` fails gets 422 (kopf's finalizer patches), as from
        kube-apiserver. No await in here, so check-and-bump is atomic on the event loop; the version given to an
        update still queued for KMock's lock is remembered, so a second update with the older version is refused.
        """
        if request.resource is None:
            return None
        latest: dict[Any, str] = self.__dict__.setdefault("_latest_versions", {})
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            latest.pop((request.resource, request.namespace or meta.get("namespace"), meta.get("name")), None)
            return None
        if request.action != enums.action.UPDATE or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        current = latest.get(key) or str((self._objects[key].get("metadata") or {}).get("resourceVersion") or "")
        version = str(next(demo_cluster._versions))
        if isinstance(request.data, dict):
            meta = request.data.get("metadata")
            wanted = meta.get("resourceVersion") if isinstance(meta, dict) else None
            if wanted and str(wanted) != current:
                return 409
            request.data.setdefault("metadata", {})["resourceVersion"] = version
            spec = request.data.get("spec")
            old = self._objects[key]
            if not getattr(request, "subresource", None) and isinstance(spec, dict) and any(
                    (old.get("spec") or {}).get(field) != value for field, value in spec.items()):
                # A spec change (not a status write) gives the object its next generation, as kube-apiserver does.
                request.data["metadata"]["generation"] = int((old.get("metadata") or {}).get("generation") or 1) + 1
        elif isinstance(request.data, list):
            for op in request.data:
                if (isinstance(op, dict) and op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion"
                        and str(op.get("value")) != current):
                    return 422
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        else:
            return None
        latest[key] = version
        return None


class Cluster:
    """A KMock server in a background thread, and a small synchronous client for tests."""

    def __init__(self) -> None:
        self.delays: dict[str, float] = {}  # see KMock.delays
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kmock", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("KMock did not start")
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with KMock() as emulator, apps.Server(emulator) as server:
            emulator.resources.load_bundled()
            for plural, kind in ((k8s.RUN_PLURAL, k8s.RUN_KIND), (k8s.TARGET_PLURAL, k8s.TARGET_KIND)):
                emulator.resources[f"{k8s.GROUP}/{k8s.VERSION}/{plural}"] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, subresources={"status"},
                    verbs={"get", "list", "watch", "patch", "create", "delete", "update"})
            # kopf's peering resource (the chart installs its CRD when replicas > 1).
            emulator.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(
                kind="ClusterKopfPeering", namespaced=False, verbs={"get", "list", "watch", "patch", "create"})
            emulator.delays = self.delays
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self.http.close()
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # --- plain verbs -----------------------------------------------------------------------------------
    def create(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(url, json=body)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def get(self, url: str) -> dict[str, Any] | None:
        response = self.http.get(url)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def patch(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.patch(url, content=json.dumps(body), headers={"Content-Type": "application/merge-patch+json"})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def delete(self, url: str) -> None:
        self.http.delete(url).raise_for_status()

    # --- Outrider objects ------------------------------------------------------------------------------
    def target(self, name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"apiVersion": k8s.API_VERSION, "kind": k8s.TARGET_KIND,
                                "metadata": {"name": name, "namespace": ns}, "spec": spec}
        annotations = spec.pop("annotations", None)
        if annotations:
            body["metadata"]["annotations"] = annotations
        return self.create(kube.targets(ns), body)

    def run(self, name: str, target: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
        spec.setdefault("template", {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "agent", "image": "agent:1"}]}}}})
        return self.create(kube.runs(ns), {"apiVersion": k8s.API_VERSION, "kind": k8s.RUN_KIND,
                                           "metadata": {"name": name, "namespace": ns},
                                           "spec": {"target": target, **spec}})

    def autonomy(self, ns: str = "default", name: str = k8s.AUTONOMY_CONFIGMAP_DEFAULT, **data: str) -> None:
        if self.get(kube.configmaps(ns, name)) is None:
            self.create(kube.configmaps(ns), {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": name, "namespace": ns}, "data": data})
        else:
            self.patch(kube.configmaps(ns, name), {"data": data})

    def run_obj(self, name: str, ns: str = "default") -> dict[str, Any]:
        obj = self.get(kube.runs(ns, name))
        assert obj is not None, f"Run {name} not found"
        return obj

    def run_status(self, name: str, ns: str = "default") -> dict[str, Any]:
        return self.run_obj(name, ns).get("status") or {}

    def target_status(self, name: str, ns: str = "default") -> dict[str, Any]:
        obj = self.get(kube.targets(ns, name))
        assert obj is not None, f"Target {name} not found"
        return obj.get("status") or {}

    def job(self, name: str, ns: str = "default") -> dict[str, Any] | None:
        return self.get(kube.jobs(ns, name))

    def job_status(self, name: str, status: dict[str, Any], ns: str = "default") -> None:
        """What the Job controller would write: e.g. {"active": 1, "startTime": ...}."""
        self.patch(kube.jobs(ns, name) + "/status", {"status": status})

    def start_job(self, name: str, ns: str = "default") -> None:
        self.job_status(name, {"active": 1, "startTime": now_text()}, ns)

    def finish_job(self, name: str, *, ok: bool, reason: str = "BackoffLimitExceeded", ns: str = "default") -> None:
        stamp = now_text()
        if ok:
            self.job_status(name, {"active": 0, "succeeded": 1, "completionTime": stamp, "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": stamp}]}, ns)
        else:
            self.job_status(name, {"active": 0, "failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": reason, "message": f"Job failed: {reason}",
                 "lastTransitionTime": stamp}]}, ns)

    def events_about(self, name: str, ns: str = "default") -> list[dict[str, Any]]:
        items = (self.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items") or []
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def now_text() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.03, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


class Operator:
    """The operator in a thread, started and stopped like a process (restartable)."""

    def __init__(self, env: dict[str, str], *, peering: str | None = None, priority: int | None = None) -> None:
        self.env = env
        self.peering = peering
        self.priority = priority
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> Operator:
        os.environ.update(self.env)
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error = None

        def main() -> None:
            try:
                asyncio.run(operator_main.serve(standalone=self.peering is None, peering=self.peering,
                                                priority=self.priority, stop_flag=self.stop_flag,
                                                ready_flag=self.ready_flag))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc

        self.thread = threading.Thread(target=main, name="operator", daemon=True)
        self.thread.start()
        if not self.ready_flag.wait(15):
            raise RuntimeError(f"operator did not become ready: {self.error!r}")
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.stop_flag.set()
            self.thread.join(20)
            assert not self.thread.is_alive(), "operator did not stop"
            self.thread = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['OUTRIDER_METRICS_PORT']}/metrics"




def assert_stored_objects_fit_the_crds(cluster: Cluster) -> None:
    """Every Run and Target the operator wrote validates against its CRD, with nothing a real server would prune."""
    import operator_crd_schema as crds

    for kind, url in (("Run", kube.runs()), ("Target", kube.targets())):
        for obj in (cluster.get(url) or {}).get("items") or []:
            crds.validate(kind, obj)
            assert crds.unknown_fields(obj, crds.schema_of(kind)) == [], (kind, obj["metadata"]["name"])
