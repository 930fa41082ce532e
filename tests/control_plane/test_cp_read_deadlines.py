"""Slow clients cannot hold connections: headers and bodies that do not arrive in time get 408 and the connection
closes (read_deadlines.py), while other clients keep being answered. Raw sockets, as a slowloris client would."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer


def _connect(server: RunningServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _slow_server(make: Callable[..., settings.Settings], start: Callable[[settings.Settings], RunningServer]) -> RunningServer:
    return start(make(header_timeout_seconds=0.5, body_timeout_seconds=1.0))


def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closes(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = _slow_server(make_sqlite_settings, start_server)
    silent, dribbling = _connect(server), _connect(server)
    dribbling.sendall(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
    started = time.monotonic()
    for sock in (silent, dribbling):
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"
    assert time.monotonic() - started < 8  # closed by the deadline, not by the client's 10 s socket timeout
    assert server.client.get("/v1/runs").status_code == 200


def test_a_body_that_does_not_arrive_in_time_gets_408_and_nothing_is_stored(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = _slow_server(make_sqlite_settings, start_server)
    body = json.dumps(support.event("run.created", "slow-body")).encode()
    sock = _connect(server)
    sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (support.TOKEN.encode(), len(body), body[:10]))
    answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"body" in answer
    assert server.client.get("/v1/runs/slow-body").status_code == 404


def test_a_keep_alive_connection_gets_a_fresh_deadline_for_each_request(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = _slow_server(make_sqlite_settings, start_server)
    sock = _connect(server)
    for _ in range(3):  # each request in time, 1.2 s of them in all: more than one header deadline
        time.sleep(0.4)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    sock.close()


def test_many_slow_connections_do_not_stop_others_being_answered(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(header_timeout_seconds=2.0))
    slow = [_connect(server) for _ in range(200)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\n")
    assert server.client.get("/v1/runs").status_code == 200  # answered while 200 connections dribble
    answers = [_answer(sock) for sock in slow]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)


def test_connections_beyond_the_limit_get_503_at_once(
        make_sqlite_settings: Callable[..., settings.Settings], start_server: Callable[[settings.Settings], RunningServer]) -> None:
    server = start_server(make_sqlite_settings(max_connections=5, header_timeout_seconds=5.0))
    held = [_connect(server) for _ in range(6)]
    time.sleep(0.2)
    held[-1].sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert held[-1].recv(65536).startswith(b"HTTP/1.1 503 ")
    for sock in held:
        sock.close()
