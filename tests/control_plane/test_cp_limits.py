"""Limits a single client cannot exceed: live streams per credential and in all, and failed authentications per
address and minute (429 with Retry-After), while normal requests keep being answered."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import httpx

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


@contextlib.contextmanager
def stream(server: RunningServer, token: str = support.TOKEN) -> Iterator[httpx.Response]:
    with httpx.stream("GET", f"{server.url}/v1/events/stream", headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(10.0)) as response:
        yield response


def test_live_streams_are_capped_per_credential_and_freed_on_close(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(max_streams_per_key=2, max_streams=3))
    other = server.client.post("/v1/keys", json={"role": "read"}).json()["secret"]
    with stream(server) as first, stream(server) as second:
        assert first.status_code == second.status_code == 200  # (no line read: a dropped line iterator closes the stream)
        with stream(server) as third:
            assert third.status_code == 429 and "Retry-After" in third.headers
        with stream(server, other) as by_other:  # another credential still gets one: the total is 3
            assert by_other.status_code == 200
            with stream(server, other) as over_total:
                assert over_total.status_code == 429
        assert server.client.get("/v1/runs").status_code == 200  # plain requests are not held up
    for _ in range(50):  # the closed streams' slots come back once their generators finish
        with stream(server) as again:
            if again.status_code == 200:
                break
        time.sleep(0.1)
    assert again.status_code == 200


def test_failed_authentications_are_limited_per_address(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(auth_failures_per_minute=5))
    wrong = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer guess"}, timeout=30)
    answers = [wrong.get("/v1/runs").status_code for _ in range(8)]
    assert answers[:5] == [401] * 5 and answers[-1] == 429
    refused = server.client.get("/v1/runs")  # the same address, a valid token: still refused until the minute ends
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"] == "too_many_requests"
    assert server.anonymous.get("/v1/health").status_code == 200
