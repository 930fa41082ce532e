"""The worker SDK against a real control plane: events arrive and fold into the right run record; a stage
that raises fails the run; a batch whose answer was lost is resent and deduplicated; an outage buffers and
delivers later; a full buffer drops the oldest and counts it; emit never waits on the network."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from outrider import client
from tests.client.conftest import Servers

FAST = {"flush_interval": 0.05, "backoff_initial": 0.02, "backoff_max": 0.2}


def test_run_events_arrive_and_fold_into_the_run_record(server: Servers, token: str) -> None:
    with client.Client(server.url, token, source="/workers/test", **FAST) as outrider:
        run = outrider.run("run-sdk-1", "acme/web")
        run.started()
        with run.stage("plan"):
            run.usage("anthropic", "claude-sonnet-4", input_tokens=1200, output_tokens=300, cost_usd=0.0081, latency_s=2.5)
            run.progress(1, 3)
        with run.stage("code"):
            run.log("info", "editing 3 files")
            run.usage("openai", "gpt-4.1-mini", input_tokens=800, output_tokens=100, cost_usd=0.0005)
        run.pr_created(17, "https://git.example.test/acme/web/pull/17")
        run.succeeded()
        assert outrider.flush(timeout=30)
        stats = outrider.stats()
    assert (stats.emitted, stats.delivered, stats.duplicates, stats.dropped, stats.rejected, stats.pending) == (11, 11, 0, 0, 0, 0)
    assert stats.position >= 11  # the log position of its last acknowledged write: read-your-writes

    record = server.run("run-sdk-1", stats.position)
    assert record["status"] == "succeeded" and record["target"] == "acme/web"
    total = record["llm_usage"]["total"]
    assert (total["input_tokens"], total["output_tokens"]) == (2000, 400)
    assert total["cost_usd"] == pytest.approx(0.0086)
    assert record["llm_usage"]["by_phase"]["plan"]["input_tokens"] == 1200  # phase defaults to the open stage
    assert set(record["metrics"]["phase_timings"]) == {"plan", "code"}
    assert all(t["duration_seconds"] is not None for t in record["metrics"]["phase_timings"].values())
    assert record["pr_count"] == 1
    kinds = [event["type"] for event in server.events("run-sdk-1")]
    assert kinds.count("run.stage.completed") == 2 and "run.log" in kinds and "run.progress" in kinds
    assert {event["source"] for event in server.events("run-sdk-1")} == {"/workers/test"}


def test_a_stage_that_raises_fails_the_run_once_and_reraises(server: Servers, token: str) -> None:
    with client.Client(server.url, token, **FAST) as outrider:
        run = outrider.run("run-sdk-2", "acme/web")
        run.started()
        with pytest.raises(TimeoutError), run.stage("test"), run.stage("unit"):
            raise TimeoutError("tests did not finish within 600s")
        assert run.finished == "run.failed"
        with pytest.raises(KeyError), run.stage("cleanup", fail_run=False):
            raise KeyError("tmp")
        assert outrider.flush(timeout=30)
    record = server.run("run-sdk-2")
    assert record["status"] == "failed"
    assert (record["error_type"], record["error_stage"]) == ("TimeoutError", "unit")
    found = server.events("run-sdk-2")
    failed = [event for event in found if event["type"] == "run.failed"]
    assert len(failed) == 1 and "raise TimeoutError" in failed[0]["data"]["traceback"]
    assert not [event for event in found if event["type"] == "run.stage.completed"]
    logs = [event["data"]["message"] for event in found if event["type"] == "run.log"]
    assert logs == ["stage cleanup raised KeyError: 'tmp'"]


def test_invalid_events_are_refused_at_emit_not_sent(server: Servers, token: str) -> None:
    with client.Client(server.url, token, **FAST) as outrider:
        run = outrider.run("run-sdk-3", "acme/web")
        with pytest.raises(client.ClientError, match="input_tokens"):
            run.usage("openai", "gpt", input_tokens=-1, output_tokens=0)
        with pytest.raises(client.ClientError, match="runid"):
            outrider.emit("run.started")
        with pytest.raises(client.ClientError, match="stage"):
            run.progress(1)  # outside every stage and none named
        assert outrider.stats().emitted == 0


class _LosesFirstAnswer(http.server.BaseHTTPRequestHandler):
    """Forwards POSTs to the control plane; the first time it drops the answer (the events ARE stored)."""

    upstream = ""
    posts: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append(body)
        answer = httpx.post(self.upstream + self.path, content=body, headers={
            "Content-Type": self.headers["Content-Type"], "Authorization": self.headers["Authorization"]})
        if len(type(self).posts) == 1:
            self.close_connection = True
            return  # no response: the client sees the connection close and must retry
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def lossy_proxy(server: Servers) -> Iterator[str]:
    handler = type("Handler", (_LosesFirstAnswer,), {"upstream": server.url, "posts": []})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()


def test_a_resent_batch_is_deduplicated_by_the_server(server: Servers, token: str, lossy_proxy: str) -> None:
    with client.Client(lossy_proxy, token, batch_size=5, **FAST) as outrider:
        run = outrider.run("run-sdk-4", "acme/web")
        for number in range(5):
            run.log("info", f"line {number}")
        assert outrider.flush(timeout=30)
        stats = outrider.stats()
    assert stats.failed_attempts == 1 and stats.duplicates == 5 and stats.delivered == 0
    assert len(server.events("run-sdk-4")) == 5  # stored once, although sent twice


def test_an_outage_buffers_and_delivers_when_the_server_is_back(servers: Servers, token: str) -> None:
    outrider = client.Client(servers.url, token, batch_size=10, **FAST)
    try:
        run = outrider.run("run-sdk-5", "acme/web")
        run.started()
        with run.stage("plan"):
            run.usage("anthropic", "claude-sonnet-4", input_tokens=10, output_tokens=5)
        run.succeeded()
        assert not outrider.flush(timeout=0.3)
        during = outrider.stats()
        assert during.pending == 5 and during.failed_attempts >= 1 and during.delivered == 0
        assert "ConnectError" in (during.last_error or "")
        servers.start()
        assert outrider.flush(timeout=30)
        assert outrider.stats().delivered == 5
    finally:
        outrider.close(timeout=5)
    assert servers.run("run-sdk-5")["status"] == "succeeded"


def test_a_full_buffer_drops_the_oldest_and_counts_them(servers: Servers, token: str) -> None:
    # Nothing is due before flush(): no batch leaves the buffer while the server is down, so the count is exact.
    outrider = client.Client(servers.url, token, batch_size=100, flush_interval=3600, max_buffer=5)
    try:
        ids = [outrider.emit("run.log", runid="run-sdk-6", target="acme/web", data={"level": "info", "message": str(n)})
               for n in range(12)]
        assert outrider.stats().dropped == 7 and outrider.stats().pending == 5
        servers.start()
        assert outrider.flush(timeout=30)
    finally:
        outrider.close(timeout=5)
    assert [event["id"] for event in servers.events("run-sdk-6")] == ids[7:]  # the newest five survive


@pytest.fixture
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(30)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", listener
    listener.close()


def test_emit_never_waits_on_the_network(silent_server: tuple[str, socket.socket], token: str) -> None:
    url, listener = silent_server
    # A 60 s request timeout: any emit/flush/close that waited on the network would take a minute.
    outrider = client.Client(url, token, batch_size=1, flush_interval=0.01, max_buffer=100, request_timeout=60)
    connection: socket.socket | None = None
    try:
        outrider.emit("run.started", runid="run-sdk-7", target="acme/web")
        connection, _ = listener.accept()  # the background thread is now inside a post that will not be answered
        connection.settimeout(30)
        assert b"POST /v1/events" in connection.recv(65536)
        slowest = 0.0
        for number in range(1000):
            started = time.monotonic()
            outrider.emit("run.log", runid="run-sdk-7", target="acme/web", data={"level": "info", "message": str(number)})
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 10  # generous: a blocked call would wait the 60 s request timeout
        stats = outrider.stats()
        assert stats.emitted == 1001 and stats.dropped == 900 and stats.pending == 101 and stats.delivered == 0
        started = time.monotonic()
        assert not outrider.flush(timeout=0.1)
        assert not outrider.close(timeout=0.1)
        assert time.monotonic() - started < 10
    finally:
        if connection is not None:
            connection.close()


def test_a_partial_batch_leaves_after_the_flush_interval_without_flush(server: Servers, token: str) -> None:
    outrider = client.Client(server.url, token, batch_size=50, flush_interval=0.05)
    try:
        outrider.emit("run.started", runid="run-sdk-8", target="acme/web")
        deadline = time.monotonic() + 30
        while outrider.stats().delivered < 1:  # nobody calls flush(): the interval alone sends it
            assert time.monotonic() < deadline, outrider.stats()
            time.sleep(0.01)
    finally:
        outrider.close(timeout=5)
    assert server.run("run-sdk-8")["status"] == "running"


def test_a_poison_event_is_dropped_and_the_rest_of_its_batch_delivered(server: Servers, token: str) -> None:
    """The server refuses what no database stores (a NUL character), which the SDK cannot know ahead: the 422
    names the event, the SDK drops and counts it, resends the rest, and later events are not held back."""
    with client.Client(server.url, token, batch_size=5, **FAST) as outrider:
        run = outrider.run("run-sdk-poison", "acme/web")
        run.log("info", "before")
        run.log("info", "NUL \x00 here")
        run.log("info", "after")
        assert outrider.flush(timeout=30)
        run.log("info", "later")
        assert outrider.flush(timeout=30)
        stats = outrider.stats()
    assert stats.rejected == 1 and stats.delivered == 3 and stats.pending == 0
    assert stats.last_error is not None and "422" in stats.last_error
    assert [event["data"]["message"] for event in server.events("run-sdk-poison")] == ["before", "after", "later"]


def test_a_batch_over_the_servers_limit_is_split_until_it_fits(servers: Servers, token: str) -> None:
    servers.config = servers.config.model_copy(update={"max_batch_events": 3})
    servers.start()
    with client.Client(servers.url, token, batch_size=10, **FAST) as outrider:
        run = outrider.run("run-sdk-split", "acme/web")
        for number in range(10):
            run.log("info", f"line {number}")
        assert outrider.flush(timeout=30)
        stats = outrider.stats()
    assert stats.delivered == 10 and stats.rejected == 0
    assert len(servers.events("run-sdk-split")) == 10
