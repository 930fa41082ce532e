"""Interoperability with the official CloudEvents Python SDK (``cloudevents``): binary, structured and batch
modes in, and the events read back (``GET /v1/events``, the SSE stream) parsed by the SDK's own JSON format.

Also the spec's freedoms the SDK exercises: ``data`` of any JSON type or absent, binary data as
``data_base64``, ``time`` optional, any non-empty ``type``."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

ce = pytest.importorskip("cloudevents.core.bindings.http", reason="the cloudevents SDK (test extra)")
from cloudevents.core.formats.json import JSONFormat  # noqa: E402
from cloudevents.core.v1.event import CloudEvent  # noqa: E402

FORMAT = JSONFormat()


def _send(api: RunningServer, message: Any) -> httpx.Response:
    return api.client.post("/v1/events", content=message.body, headers=dict(message.headers))


def _stored(api: RunningServer, **params: str) -> list[dict[str, Any]]:
    return [item["event"] for item in api.client.get("/v1/events", params=params).json()["items"]]


def _parsed(event: dict[str, Any]) -> Any:
    """The SDK's reading of an event Outrider serves (its JSON format parser is strict about data_base64)."""
    return FORMAT.read(None, json.dumps(event).encode())


def test_binary_mode_json_data_round_trips(api: RunningServer) -> None:
    event = CloudEvent(attributes={"type": "run.log", "source": "/knative/pod-1", "id": "bin-1", "runid": "ce-run-1",
                                   "target": "acme/web", "datacontenttype": "application/json",
                                   "subject": "café ü 100% done"},
                       data={"level": "info", "message": "from binary mode"})
    response = _send(api, ce.to_binary(event, FORMAT))
    assert response.status_code == 202, response.text
    (stored,) = _stored(api, run_id="ce-run-1")
    back = _parsed(stored)
    assert back.get_id() == "bin-1" and back.get_type() == "run.log" and back.get_subject() == "café ü 100% done"
    assert back.get_data() == {"level": "info", "message": "from binary mode"}
    assert back.get_extension("runid") == "ce-run-1"
    assert api.client.get("/v1/runs/ce-run-1").json()["event_count"] == 1  # a known type still folds into its run


def test_binary_mode_non_json_body_is_kept_as_data_base64(api: RunningServer) -> None:
    payload = "<pr action='opened'>ü</pr>".encode()
    event = CloudEvent(attributes={"type": "com.github.pull_request:opened/v1", "source": "/github", "id": "bin-2",
                                   "datacontenttype": "application/xml"}, data=payload)
    assert _send(api, ce.to_binary(event, FORMAT)).status_code == 202
    (stored,) = _stored(api, type="com.github.pull_request:opened/v1")
    assert "data" not in stored and base64.b64decode(stored["data_base64"]) == payload  # never both
    back = _parsed(stored)
    assert back.get_data() == payload and back.get_datacontenttype() == "application/xml"


def test_the_legacy_sdk_api_in_binary_mode(api: RunningServer) -> None:
    """What the issue tried: the SDK's older API (``cloudevents.v1.http.to_binary``), no content type chosen."""
    from cloudevents.v1.conversion import to_binary
    from cloudevents.v1.http import CloudEvent as LegacyEvent

    headers, body = to_binary(LegacyEvent({"type": "com.example.sample", "source": "/legacy", "id": "bin-3"}, {"x": 1}))
    response = api.client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 202, response.text
    (stored,) = _stored(api, type="com.example.sample")
    assert stored["data"] == {"x": 1}


def test_structured_and_batch_modes_round_trip(api: RunningServer) -> None:
    first = CloudEvent(attributes={"type": "com.example.a", "source": "/s", "id": "st-1"}, data={"n": 1})
    assert _send(api, ce.to_structured(first, FORMAT)).status_code == 202
    batch = [CloudEvent(attributes={"type": "com.example.b", "source": "/s", "id": f"bt-{n}"}, data=[n, "two"]) for n in range(3)]
    body = b"[" + b",".join(FORMAT.write(event) for event in batch) + b"]"
    response = api.client.post("/v1/events", content=body, headers={"Content-Type": "application/cloudevents-batch+json"})
    assert response.status_code == 202 and response.json()["accepted"] == 3
    assert [_parsed(e).get_data() for e in _stored(api, type="com.example.b")] == [[0, "two"], [1, "two"], [2, "two"]]
    assert _parsed(_stored(api, type="com.example.a")[0]).get_data() == {"n": 1}


@pytest.mark.parametrize("data", ["a string", [1, 2, 3], None, 42, True], ids=["string", "array", "null", "number", "bool"])
def test_data_may_be_any_json_value(api: RunningServer, data: object) -> None:
    event = {"specversion": "1.0", "id": f"any-{json.dumps(data)}", "source": "/s", "type": "com.example.any",
             "time": "2026-01-01T00:00:00Z", "data": data}
    response = api.client.post("/v1/events", json=event, headers={"Content-Type": "application/cloudevents+json"})
    assert response.status_code == 202, response.text
    (stored,) = _stored(api, type="com.example.any")
    assert stored.get("data") == data and ("data" in stored) == (data is not None)
    assert _parsed(stored).get_data() == data


def test_absent_data_absent_time_and_free_form_types(api: RunningServer) -> None:
    event = {"specversion": "1.0", "id": "bare-1", "source": "/s", "type": "com.github.pull_request:opened/v1"}
    assert api.client.post("/v1/events", json=event).status_code == 202
    (stored,) = _stored(api, type="com.github.pull_request:opened/v1")
    assert "data" not in stored
    assert stored["timesource"] == "received" and stored["time"]  # the time it was received, and said so
    assert _parsed(stored).get_time() is not None


def test_payload_rules_that_still_hold(api: RunningServer) -> None:
    both = {**support.event("com.example.x", None), "data": {"a": 1}, "data_base64": "AAAA"}
    known_with_string = {**support.event("run.log", "r-1"), "data": "not an object"}
    for bad, field in ((both, ""), (known_with_string, "data")):
        response = api.client.post("/v1/events", json=bad)
        assert response.status_code == 422, response.text
        assert any(p["field"] == field for p in response.json()["detail"]), response.json()
    empty_type = {**support.event("x", None), "type": ""}
    assert api.client.post("/v1/events", json=empty_type).status_code == 422
    assert _stored(api) == []


def test_the_live_stream_sends_cloudevents(api: RunningServer) -> None:
    """SSE ``data:`` is the stored CloudEvent (the SDK parses it), ``id:`` its position."""
    with httpx.stream("GET", f"{api.url}/v1/events/stream", headers={"Authorization": f"Bearer {support.TOKEN}"},
                      timeout=httpx.Timeout(10.0)) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        api.client.post("/v1/events", json=support.event("run.created", "sse-1"))
        fields: dict[str, str] = {}
        for line in lines:
            if line == "" and "data" in fields:
                break
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    back = _parsed(json.loads(fields["data"]))
    assert back.get_type() == "run.created" and back.get_extension("runid") == "sse-1"
    assert fields["event"] == "run.created" and int(fields["id"]) >= 1
