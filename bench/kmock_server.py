"""``python -m bench.kmock_server``: the test suite's KMock, with an indexed object store, in a process of its own.

The operator benchmark runs the API server, the operator and the measuring client as three processes, so none
of them shares a GIL (or a core's time slice) with another and each one's CPU can be read separately.

Why not KMock's own object handling: in the last full run KMock used ~1.7 CPU-s per Run at 200 Runs (336 CPU-s
against the operator's 20), so the operator figures measured the emulator. Its request path (kmock/_internal:
apps.py, k8s.py, k8s_dicts.py) does work that grows with the requests and objects it has seen, not with the
request: every request is parsed into a full ``Request`` (body, text, JSON, headers, cookies) and kept forever in
``kmock.requests``; it is matched against every reaction filter, re-sorted per request; every GET/PATCH/DELETE
scans all stored objects of all resources for its key; a list walks every object to rediscover the resources;
every patch deep-copies the object and appends it to a history that is never trimmed; and each change is
serialised again for every watch stream. (Profiling it under the bench with pyinstrument or cProfile did not
finish within the bench's phase timeouts even at 50-100 Runs.)

``IndexedKMock`` keeps KMock for everything that is not an object request (discovery, version, unknown paths,
errors) and serves the object verbs of declared resources from a store indexed by (resource, namespace, name),
serialising each object version once. It is a stricter API server than KMock for what the operator uses:

- ``metadata.resourceVersion`` is a cluster-wide counter bumped by every write, and a patch that carries
  ``metadata.resourceVersion`` is refused with 409 Conflict when the object has changed since (the operator's
  status writes rely on that precondition); a write that changes nothing bumps nothing and notifies nobody;
- ``metadata.generation`` increases when ``spec`` changes;
- JSON merge patches (RFC 7386) and JSON patches; for resources with a ``status`` subresource a write to the
  object ignores ``status`` and a write to ``/status`` changes only ``status``;
- deletion honours finalizers (``deletionTimestamp`` first, gone when the last finalizer is removed);
- lists carry the current resourceVersion; a watch with a ``resourceVersion`` replays the changes after it (410
  Gone when it is older than the kept history), without one it starts with ADDED for every object; watches end
  after ``timeoutSeconds``; ``labelSelector`` (equality and existence) and ``fieldSelector`` (``metadata.name``,
  ``metadata.namespace``) filter lists and watches.

It also counts the requests it serves by verb and resource (``GET /bench/requests`` answers the counts so far,
keyed ``"VERB plural[/subresource]"``, watches as ``WATCH``), so the benchmark can report API requests per Run.

Prints ``URL <url>`` once serving; stops when its stdin closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import sys
import types
import uuid
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import apps, enums, parsing, references

from outrider.common import k8s
from outrider.demo import cluster as demo_cluster
from tests.operator import operator_harness

#: Changes kept per resource for watches that resume from a resourceVersion; older ones get 410 Gone.
WATCH_HISTORY = 20_000

ResourceKey = tuple[str, str, str]  # (group, version, plural)
ObjectKey = tuple[str | None, str]  # (namespace, name)


class ApiError(Exception):
    """A Kubernetes ``Status`` failure answered to the client."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; unchanged subtrees are shared, never mutated (stored objects are immutable)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selector(text: str | None, what: str) -> list[tuple[str, str, str | None]]:
    """Parse ``k=v,k!=v,k,!k`` into (op, key, value); set-based forms are refused (not used by the operator)."""
    terms: list[tuple[str, str, str | None]] = []
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        if "(" in term or " in " in term or " notin " in term:
            raise ApiError(400, "BadRequest", f"unsupported {what}: {term!r}")
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "==" in term or "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            terms.append(("=", key.strip(), value.strip()))
        elif term.startswith("!"):
            terms.append(("!", term[1:].strip(), None))
        else:
            terms.append(("exists", term, None))
    return terms


def _matches(terms: list[tuple[str, str, str | None]], values: dict[str, Any]) -> bool:
    for op, key, value in terms:
        present = key in values
        if op == "=" and (not present or values[key] != value):
            return False
        if op == "!=" and present and values[key] == value:
            return False
        if op == "!" and present:
            return False
        if op == "exists" and not present:
            return False
    return True


class Filter:
    """What a list or watch asks for: namespace, name, label and field selectors."""

    def __init__(self, namespace: str | None, name: str | None, query: Any) -> None:
        self.namespace = namespace
        self.labels = _selector(query.get("labelSelector"), "labelSelector")
        fields = _selector(query.get("fieldSelector"), "fieldSelector")
        for _op, key, _value in fields:
            if key not in ("metadata.name", "metadata.namespace"):
                raise ApiError(400, "BadRequest", f"field selector {key!r} is not supported")
        if name is not None:
            fields.append(("=", "metadata.name", name))
        self.fields = fields

    def __call__(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.fields and not _matches(
            self.fields, {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace") or ""}
        ):
            return False
        return not self.labels or _matches(self.labels, meta.get("labels") or {})


class Stored:
    """One object version and its JSON, serialised once."""

    __slots__ = ("obj", "raw", "version")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.raw = json.dumps(obj, separators=(",", ":")).encode()
        self.version = int(obj["metadata"]["resourceVersion"])


class Resource:
    """The objects of one resource, the changes kept for resuming watches, and the open watches."""

    def __init__(self, info: references.ResourceInfo) -> None:
        self.info = info
        self.kind = info.kind or ""
        self.has_status = "status" in (info.subresources or set())
        self.objects: dict[ObjectKey, Stored] = {}
        self.history: collections.deque[tuple[int, dict[str, Any], bytes]] = collections.deque(maxlen=WATCH_HISTORY)
        self.watches: set[tuple[Filter, asyncio.Queue[bytes]]] = set()

    def notify(self, kind: str, stored: Stored) -> None:
        line = b'{"type":"' + kind.encode() + b'","object":' + stored.raw + b"}\n"
        self.history.append((stored.version, stored.obj, line))
        for wanted, queue in self.watches:
            if wanted(stored.obj):
                queue.put_nowait(line)


def _status_body(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": status,
            "reason": reason, "message": message}  # fmt: skip


def _json(body: bytes, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=body, status=status, content_type="application/json")


class IndexedKMock(operator_harness.KMock):
    """The harness's KMock; object requests of declared resources are served from an indexed store."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._store: dict[ResourceKey, Resource | None] = {}
        self._version = 0  # the cluster-wide resourceVersion: bumped by every write
        self.requests: collections.Counter[str] = collections.Counter()  # "VERB plural[/subresource]" -> count

    def _resource(self, key: ResourceKey) -> Resource | None:
        if key not in self._store:
            ref = references.resource(group=key[0], version=key[1], plural=key[2])
            self._store[key] = Resource(self.resources[ref]) if ref in self.resources else None
        return self._store[key]

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path == "/bench/requests":
            return _json(json.dumps(dict(self.requests)).encode())
        path = parsing.parse_path(raw_request.path)
        watch = raw_request.method == "GET" and raw_request.query.get("watch") in ("true", "1")
        what = "/".join(p for p in (path.plural or raw_request.path, path.subresource) if p)
        self.requests[f"{'WATCH' if watch else raw_request.method} {what}"] += 1
        if path.group is None or path.version is None or not path.plural:
            return await super().__call__(raw_request)
        resource = self._resource((path.group, path.version, path.plural))
        if resource is None:
            return await super().__call__(raw_request)
        try:
            return await self._serve(raw_request, resource, path)
        except ApiError as exc:
            return _json(json.dumps(_status_body(exc.status, exc.reason, exc.message)).encode(), exc.status)

    async def _serve(
        self, request: aiohttp.web.BaseRequest, resource: Resource, path: parsing.ParsedPath
    ) -> aiohttp.web.StreamResponse:
        method, query = request.method, request.query
        if method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(request, resource, Filter(path.namespace, path.name, query))
        if path.subresource not in (None, "status") or (path.subresource and path.name is None):
            raise ApiError(404, "NotFound", f"subresource {path.subresource!r} is not served")
        if path.name is None:
            if method == "GET":
                return self._list(resource, Filter(path.namespace, None, query))
            if method == "POST":
                return self._create(resource, path, await self._body(request))
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection is not supported")
        key = (path.namespace, path.name)
        if method == "GET":
            return _json(self._get(resource, key).raw)
        if method == "PATCH":
            return self._patch(resource, key, path.subresource, request.content_type, await self._body(request))
        if method == "PUT":
            return self._replace(resource, key, path.subresource, await self._body(request))
        if method == "DELETE":
            return self._delete(resource, key)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    @staticmethod
    async def _body(request: aiohttp.web.BaseRequest) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body is not JSON: {exc}") from None

    @staticmethod
    def _get(resource: Resource, key: ObjectKey) -> Stored:
        stored = resource.objects.get(key)
        if stored is None:
            raise ApiError(404, "NotFound", f"{resource.kind} {key[0]}/{key[1]} not found")
        return stored

    def _store_version(self, resource: Resource, key: ObjectKey, obj: dict[str, Any], kind: str) -> Stored:
        self._version += 1
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self._version)}
        stored = Stored(obj)
        if kind == "DELETED":
            resource.objects.pop(key, None)
        else:
            resource.objects[key] = stored
        resource.notify(kind, stored)
        return stored

    def _list(self, resource: Resource, wanted: Filter) -> aiohttp.web.Response:
        items = [s.raw for s in resource.objects.values() if wanted(s.obj)]
        head = {"apiVersion": "v1", "kind": f"{resource.kind}List", "metadata": {"resourceVersion": str(self._version)}}
        body = json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"items":[' + b",".join(items) + b"]}"
        return _json(body)

    def _create(self, resource: Resource, path: parsing.ParsedPath, body: Any) -> aiohttp.web.Response:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object")
        generated = not (body.get("metadata") or {}).get("name")
        request = types.SimpleNamespace(resource=resource, action=enums.action.CREATE, data=body,
                                        namespace=path.namespace)  # fmt: skip
        demo_cluster.fill_server_metadata(request)
        meta = body["metadata"]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name or metadata.generateName is required")
        if not resource.info.namespaced:
            meta.pop("namespace", None)
        key = (meta.get("namespace"), meta["name"])
        for _retry in range(7):  # like kube-apiserver (1.31+), draw a generated name again when it is taken
            if not generated or key not in resource.objects:
                break
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            key = (meta.get("namespace"), meta["name"])
        if key in resource.objects:
            raise ApiError(409, "AlreadyExists", f"{resource.kind} {key[0]}/{key[1]} already exists")
        body.setdefault("kind", resource.kind)
        return _json(self._store_version(resource, key, body, "ADDED").raw, 201)

    def _write(self, resource: Resource, key: ObjectKey, old: Stored, new: dict[str, Any]) -> Stored:
        """Store a changed object (or nothing when nothing changed); finalizers decide when a deletion ends."""
        old_meta, meta = old.obj["metadata"], new.get("metadata") or {}
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion", "generation"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        if old_meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
        new["metadata"] = meta
        if new.get("spec") != old.obj.get("spec"):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old.obj:
            return old
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._store_version(resource, key, new, "DELETED")
        return self._store_version(resource, key, new, "MODIFIED")

    @staticmethod
    def _precondition(resource: Resource, old: Stored, body: Any) -> None:
        wanted = ((body.get("metadata") or {}) if isinstance(body, dict) else {}).get("resourceVersion")
        if wanted and str(wanted) != old.obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"the object has been modified (resourceVersion {wanted} is outdated)")

    @staticmethod
    def _scope(resource: Resource, subresource: str | None, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """A write to /status changes only status; a write to the object leaves status alone (when it has one)."""
        if subresource == "status":
            result = dict(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            result["metadata"] = dict(old["metadata"])
            return result
        if resource.has_status:
            new = dict(new)
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    def _patch(
        self, resource: Resource, key: ObjectKey, subresource: str | None, content_type: str, body: Any
    ) -> aiohttp.web.Response:
        old = self._get(resource, key)
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                new = jsonpatch.apply_patch(old.obj, body, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(422, "Invalid", f"the JSON patch does not apply: {exc}") from None
        elif isinstance(body, dict):
            self._precondition(resource, old, body)
            new = merge_patch(old.obj, body)
        else:
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        new = self._scope(resource, subresource, old.obj, new)
        return _json(self._write(resource, key, old, new).raw)

    def _replace(self, resource: Resource, key: ObjectKey, subresource: str | None, body: Any) -> aiohttp.web.Response:
        old = self._get(resource, key)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object")
        self._precondition(resource, old, body)
        new = self._scope(resource, subresource, old.obj, {**body, "metadata": dict(body.get("metadata") or {})})
        return _json(self._write(resource, key, old, new).raw)

    def _delete(self, resource: Resource, key: ObjectKey) -> aiohttp.web.Response:
        old = self._get(resource, key)
        meta = old.obj["metadata"]
        if meta.get("deletionTimestamp"):
            return _json(old.raw)
        if meta.get("finalizers"):
            stamp = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
            new = {**old.obj, "metadata": {**meta, "deletionTimestamp": stamp, "deletionGracePeriodSeconds": 0}}
            return _json(self._store_version(resource, key, new, "MODIFIED").raw)
        return _json(self._store_version(resource, key, dict(old.obj), "DELETED").raw)

    async def _watch(
        self, request: aiohttp.web.BaseRequest, resource: Resource, wanted: Filter
    ) -> aiohttp.web.StreamResponse:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        since = request.query.get("resourceVersion") or ""
        if since in ("", "0") or not since.isdigit():
            for stored in list(resource.objects.values()):
                if wanted(stored.obj):
                    queue.put_nowait(b'{"type":"ADDED","object":' + stored.raw + b"}\n")
        elif resource.history and resource.history[0][0] > int(since) + 1 and len(resource.history) == WATCH_HISTORY:
            gone = _status_body(410, "Expired", f"too old resource version: {since}")
            queue.put_nowait(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
        else:
            for version, obj, line in resource.history:
                if version > int(since) and wanted(obj):
                    queue.put_nowait(line)
        entry = (wanted, queue)
        resource.watches.add(entry)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            timeout = float(request.query.get("timeoutSeconds") or 0) or None
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(timeout):
                    while True:
                        lines = [await queue.get()]
                        while not queue.empty():
                            lines.append(queue.get_nowait())
                        await response.write(b"".join(lines))
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        finally:
            resource.watches.discard(entry)
        return response


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
