"""A small asynchronous Kubernetes API client for the operator's own reads and writes.

kopf watches and calls handlers; the handlers still need to create Jobs, patch statuses and read the autonomy
ConfigMap. This client does that over aiohttp (kopf's own HTTP stack) with the same credentials kopf logs in with (one
:func:`load_config` feeds both): the in-cluster service account, else ``$KUBECONFIG`` / ``~/.kube/config``
through the kubernetes package's loader (contexts, exec plugins, client certificates).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp

from outrider.common import k8s


class ApiError(Exception):
    """The API server refused a request. Raised as the subclass for its status, so callers catch by kind
    (``except kube.Conflict``) instead of comparing numbers; :meth:`of` picks it."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {body[:300]}")
        self.status = status
        self.body = body

    @staticmethod
    def of(status: int, body: str) -> ApiError:
        kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
        return kind(status, body)

    @property
    def permanent(self) -> bool:
        """Retrying the same request cannot succeed (a 4xx other than 401, 403, 408, 409 and 429)."""
        return 400 <= self.status < 500 and self.status not in (401, 403, 408, 409, 429)


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409: already exists, or the resourceVersion precondition failed (someone wrote in between)."""


class Forbidden(ApiError):
    """403: RBAC does not allow it (also 401 Unauthorized: the credential is not accepted)."""


class Invalid(ApiError):
    """422 (and 400): the object fails the schema or a validation rule (CEL, immutability)."""


class ServerError(ApiError):
    """5xx: the API server or etcd failed; worth retrying."""


_BY_STATUS: dict[int, type[ApiError]] = {400: Invalid, 401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid}


@dataclasses.dataclass(frozen=True)
class Config:
    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    default_namespace: str | None = None


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def load_config() -> Config:
    """In-cluster config when running in a pod, else the kubeconfig (``$KUBECONFIG``, then ~/.kube/config)."""
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    configuration = kube_client.Configuration()
    namespace: str | None = None
    try:
        kube_config.load_incluster_config(client_configuration=configuration)
        try:
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace")) as handle:
                namespace = handle.read().strip() or None
        except OSError:
            namespace = None
    except kube_config.ConfigException:
        config_file = os.environ.get("KUBECONFIG") or None
        kube_config.load_kube_config(config_file=config_file, client_configuration=configuration)
        try:
            _, active = kube_config.list_kube_config_contexts(config_file=config_file)
            namespace = ((active or {}).get("context") or {}).get("namespace")
        except kube_config.ConfigException:
            namespace = None
    auth = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    token = None
    if auth:
        prefix = (configuration.api_key_prefix or {}).get("authorization")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
        if prefix and prefix.lower() != "bearer":
            token = auth
    return Config(
        server=configuration.host.rstrip("/"),
        token=token,
        ca_path=configuration.ssl_ca_cert,
        cert_path=configuration.cert_file,
        key_path=configuration.key_file,
        insecure=not configuration.verify_ssl,
        default_namespace=namespace,
    )


def path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None,
         subresource: str | None = None) -> str:
    base = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    if name:
        base += f"/{name}"
    if subresource:
        base += f"/{subresource}"
    return base


def runs(namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    return path(k8s.GROUP, k8s.VERSION, k8s.RUN_PLURAL, namespace, name, subresource)


def targets(namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    return path(k8s.GROUP, k8s.VERSION, k8s.TARGET_PLURAL, namespace, name, subresource)


def jobs(namespace: str | None = None, name: str | None = None) -> str:
    return path("batch", "v1", "jobs", namespace, name)


def cronjobs(namespace: str | None = None, name: str | None = None) -> str:
    return path("batch", "v1", "cronjobs", namespace, name)


def configmaps(namespace: str, name: str | None = None) -> str:
    return path("", "v1", "configmaps", namespace, name)


def secrets(namespace: str, name: str | None = None) -> str:
    return path("", "v1", "secrets", namespace, name)


def pods(namespace: str) -> str:
    return path("", "v1", "pods", namespace)


class Client:
    """The handful of verbs the operator uses (its RBAC in docs/concepts/rbac.md lists exactly these).

    Over aiohttp, kopf's own HTTP stack, rather than httpx: measured against the bench's API server, httpx spent
    ~1.2 ms of CPU per request one at a time and ~3 ms with 32 in flight (its pool grows costlier with the number
    of waiting requests), aiohttp ~0.2 ms; with 1,000 Runs created at once the operator's handlers queued 1,000
    requests and httpx's pool timed them all out (PoolTimeout), so no Job was created. At most ``max_in_flight``
    requests are sent at a time; the others wait their turn outside the HTTP stack, so ``timeout`` measures the
    request itself, never the queue in front of it.
    """

    def __init__(self, config: Config, *, timeout: float = 10.0, max_in_flight: int = 32) -> None:
        self._ssl: ssl.SSLContext | bool = True
        if config.ca_path or (config.cert_path and config.key_path):
            context = ssl.create_default_context(cafile=config.ca_path)
            if config.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if config.cert_path and config.key_path:
                context.load_cert_chain(config.cert_path, config.key_path)
            self._ssl = context
        elif config.insecure:
            self._ssl = False
        self._headers = {"Accept": "application/json"}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the running event loop

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._max_in_flight + 4)  # + the watches
            self._session = aiohttp.ClientSession(self.config.server, headers=self._headers, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, url: str, *, params: dict[str, str] | None = None,
                       body: Any = None) -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body)
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
        async with self._slots, self._http().request(method, url, params=params, data=data, headers=headers,
                                                     timeout=self._timeout) as response:
            content = await response.read()
            if response.status == 404 and method == "GET":
                return None
            if response.status >= 400:
                raise ApiError.of(response.status, content.decode(errors="replace"))
        if not content:
            return None
        return json.loads(content)  # type: ignore[no-any-return]

    async def get(self, url: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return await self._request("GET", url)

    async def list(self, url: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self._request("GET", url, params=params)
        return list((result or {}).get("items") or [])

    async def create(self, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return await self._request("POST", url, body=body)

    async def patch(self, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A JSON merge patch (RFC 7386): None values delete fields."""
        return await self._request("PATCH", url, body=body)

    async def watch(self, url: str, *, field_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs from one watch request; ends when the server closes it."""
        params = {"watch": "true", "timeoutSeconds": str(timeout_seconds)}
        if field_selector:
            params["fieldSelector"] = field_selector
        query = urllib.parse.urlencode(params)
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=timeout_seconds + 30)
        async with self._http().get(f"{url}?{query}", timeout=timeout) as response:
            if response.status >= 400:
                raise ApiError.of(response.status, (await response.read()).decode(errors="replace"))
            pending = b""
            async for chunk in response.content.iter_any():
                *lines, pending = (pending + chunk).split(b"\n")
                for event in _watch_events(lines):
                    yield event
            for event in _watch_events([pending]):  # a last line the server did not end with a newline
                yield event
            await asyncio.sleep(0)


def _watch_events(lines: list[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        yield str(event.get("type")), event.get("object") or {}
