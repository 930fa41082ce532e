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


def test_requests_per_credential_are_rate_limited_without_slowing_other_credentials(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(key_requests_per_second=2, key_request_burst=5))
    other = server.client.post("/v1/keys", json={"role": "read"}).json()["secret"]  # the admin token's 1st request
    # 4 left of the burst of 5; the bucket refills at 2 a second while these are answered, so the first refusal
    # comes at the 5th request, or a little later on a slow machine: within 12 unless they took 4 s in all.
    answers = [server.client.get("/v1/runs") for _ in range(12)]
    codes = [a.status_code for a in answers]
    assert codes[:4] == [200] * 4 and 429 in codes, codes
    refused = answers[codes.index(429)]
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
    assert "request rate" in refused.json()["message"] and int(refused.headers["Retry-After"]) >= 1
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other}"}, timeout=30) as reader:
        assert reader.get("/v1/runs").status_code == 200  # another credential has its own bucket
    assert server.anonymous.get("/v1/health").status_code == 200
    time.sleep(1.1)  # the bucket refills at 2 a second
    assert server.client.get("/v1/runs").status_code == 200


def test_ingest_bytes_per_credential_are_limited_and_a_refused_batch_stores_nothing(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(key_ingest_bytes_per_second=1000, key_ingest_burst_bytes=20_000))
    big = [support.event("run.log", "bytes-run", data={"level": "info", "message": "x" * 4000}, id=f"log-{i}") for i in range(6)]
    first = server.client.post("/v1/events", json=big)  # ~25 kB: allowed (the bucket had 20 kB), leaves a debt
    assert first.status_code == 202, first.text
    over = server.client.post("/v1/events", json=support.event("run.created", "bytes-later"))
    assert over.status_code == 429 and "ingest bytes" in over.json()["message"]
    assert int(over.headers["Retry-After"]) >= 5  # the debt, paid back at 1000 bytes a second
    server.caught_up()
    assert server.client.get("/v1/runs/bytes-later").status_code == 404  # nothing of the refused request stored
    assert server.client.get("/v1/runs/bytes-run").json()["event_count"] == 6


def test_metrics_can_require_a_key_that_reads_every_namespace(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    open_server = start_server(make_sqlite_settings())
    assert open_server.anonymous.get("/metrics").status_code == 200  # the default: open, like most exporters
    server = start_server(make_sqlite_settings(metrics_require_key=True))
    refused = server.anonymous.get("/metrics")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    bounded = server.client.post("/v1/keys", json={"role": "read", "namespaces": ["team-a"]}).json()["secret"]
    reader = server.client.post("/v1/keys", json={"role": "read"}).json()["secret"]
    as_tenant = server.anonymous.get("/metrics", headers={"Authorization": f"Bearer {bounded}"})
    assert as_tenant.status_code == 403 and "every namespace" in as_tenant.json()["message"]
    scraped = server.anonymous.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
    assert scraped.status_code == 200 and "outrider_store_up 1.0" in scraped.text
