"""The CLI's HTTP client for the control plane: URL and token resolution, errors mapped to exit codes.

Every client command goes through :class:`Client`, so unreachable servers, bad tokens and unknown runs give
the same messages and the same exit codes everywhere (documented in docs/cli.md):

- 0 ok
- 1 a failure was found (only when asked, e.g. ``runs list --fail-on-failed``)
- 2 usage error (bad flag or value; Typer's own code)
- 3 control plane (or Kubernetes API) unreachable, unauthorised, or answering with a server error
- 4 not found (``runs show`` of an unknown run)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from outrider.common import read_your_writes

EXIT_OK = 0
EXIT_FAILURE_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_FOUND = 4

DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """A failure the CLI reports in one sentence and turns into an exit code."""

    def __init__(self, message: str, exit_code: int, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.body = body


class Client:
    """A thin, synchronous client for the control plane's read API and event stream."""

    def __init__(self, url: str | None, token: str | None, timeout: float = 10.0) -> None:
        self.url = (url or DEFAULT_URL).rstrip("/")
        self.token = token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        #: What this invocation wrote, its reads see (outrider.common.read_your_writes).
        self.session = read_your_writes.Session()
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, event_hooks=self.session.hooks())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body: Any = response.json()
        except ValueError:
            body = {"error": "http_error", "message": response.text[:500]}
        message = body.get("message") if isinstance(body, dict) else None
        message = message or f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            hint = " (set --token or OUTRIDER_TOKEN)" if not self.token else " (check --token / OUTRIDER_TOKEN)"
            raise CliError(f"unauthorised by {self.url}: {message}{hint}", EXIT_UNREACHABLE, body)
        if response.status_code == 404:
            raise CliError(f"not found: {message}", EXIT_NOT_FOUND, body)
        if response.status_code in (400, 422):
            raise CliError(f"rejected by the control plane: {message}", EXIT_USAGE, body)
        raise CliError(f"the control plane at {self.url} answered {response.status_code}: {message}", EXIT_UNREACHABLE, body)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a JSON document; raises :class:`CliError` with the right exit code on any failure."""
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self._http.get(path, params=clean)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the control plane at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        self._check(response)
        return response.json()

    def send(self, method: str, path: str, body: Any = None) -> Any:
        """POST/DELETE a JSON document; raises :class:`CliError` with the right exit code on any failure."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the control plane at {self.url}: {exc}", EXIT_UNREACHABLE) from exc
        self._check(response)
        return response.json()

    def pages(self, path: str, params: dict[str, Any], limit: int | None, page_max: int = 1000) -> tuple[list[Any], str | None]:
        """Follow ``next_cursor`` until ``limit`` items (or the end); returns the items and the cursor left over."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            want = page_max if limit is None else min(page_max, limit - len(items))
            page = self.get(path, {**params, "limit": want, "cursor": cursor})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if cursor is None or (limit is not None and len(items) >= limit):
                return items, cursor

    def stream(self, path: str, params: dict[str, Any] | None = None, last_event_id: str | None = None) -> Iterator[tuple[str | None, Any]]:
        """Server-Sent Events from ``path`` as (id, decoded JSON data); comments and keep-alives are skipped."""
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            with self._http.stream("GET", path, params=clean, headers=headers, timeout=httpx.Timeout(10.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                event_id: str | None = None
                data: list[str] = []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            yield event_id, json.loads("\n".join(data))
                        event_id, data = None, []
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "data":
                            data.append(value)
                        elif field == "id":
                            event_id = value
        except httpx.HTTPError as exc:
            raise CliError(f"lost the event stream from {self.url}: {exc}", EXIT_UNREACHABLE) from exc
