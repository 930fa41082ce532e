"""``Content-Encoding`` on ingestion: gzip and deflate bodies are taken on ``POST /v1/events`` and OTLP; the size
limit holds on the inflated body (a gzip bomb is 413, not memory); an unknown encoding is 415, a corrupt one 400."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

from outrider.control_plane import settings
from tests.control_plane import cp_support as support
from tests.control_plane.conftest import RunningServer

BATCH = {"content-type": "application/cloudevents-batch+json"}


def _post(api: RunningServer, body: bytes, encoding: str, path: str = "/v1/events", content_type: str = BATCH["content-type"]) -> object:
    return api.client.post(path, content=body, headers={"content-type": content_type, "content-encoding": encoding})


def _batch(run_id: str, n: int = 3) -> bytes:
    return json.dumps([support.event("run.log", run_id, data={"level": "info", "message": f"line {i}"}) for i in range(n)]).encode()


def test_gzip_and_deflate_batches_are_stored(api: RunningServer) -> None:
    split = _batch("gz-3")
    for encoding, body in (
        ("gzip", gzip.compress(_batch("gz-1"))),
        ("x-gzip", gzip.compress(_batch("gz-2"))),
        ("deflate", zlib.compress(_batch("df-1"))),  # the zlib format RFC 9110 calls deflate
        ("deflate", zlib.compress(_batch("df-2"))[2:-4]),  # raw deflate, as some clients send it
        ("gzip", gzip.compress(split[:10]) + gzip.compress(split[10:])),  # two gzip members
    ):
        response = _post(api, body, encoding)
        assert response.status_code == 202, (encoding, response.text)  # type: ignore[attr-defined]
    for run_id, count in (("gz-1", 3), ("gz-2", 3), ("df-1", 3), ("df-2", 3), ("gz-3", 3)):
        assert api.client.get(f"/v1/runs/{run_id}").json()["event_count"] == count


def test_a_gzip_bomb_is_refused_by_its_inflated_size(make_settings: Callable[..., settings.Settings],
                                                     start_server: Callable[[settings.Settings], RunningServer]) -> None:
    api = start_server(make_settings(max_body_bytes=1_000_000))
    bomb = gzip.compress(b"[" + b" " * 200_000_000 + b"]", compresslevel=9)  # ~200 KB that inflates to 200 MB
    assert len(bomb) < 1_000_000
    response = _post(api, bomb, "gzip")
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"  # type: ignore[attr-defined]
    assert api.client.get("/v1/events").json()["items"] == []


def test_unknown_and_corrupt_encodings_are_refused_and_store_nothing(api: RunningServer) -> None:
    unknown = _post(api, _batch("br-1"), "br")
    assert unknown.status_code == 415 and unknown.json()["error"] == "unsupported_encoding"  # type: ignore[attr-defined]
    corrupt = _post(api, b"\x1f\x8b\x08\x00garbage", "gzip")
    assert corrupt.status_code == 400 and corrupt.json()["error"] == "malformed_body"  # type: ignore[attr-defined]
    truncated = _post(api, gzip.compress(_batch("tr-1"))[:-12], "gzip")
    assert truncated.status_code == 400 and "truncated" in truncated.json()["message"]  # type: ignore[attr-defined]
    assert api.client.get("/v1/events").json()["items"] == []


def test_gzip_otlp_json_is_taken(api: RunningServer) -> None:
    """Collectors' OTLP exporters compress by default; the JSON mapping arrives gzip'd."""
    empty_request = {"resourceSpans": []}
    response = _post(api, gzip.compress(json.dumps(empty_request).encode()), "gzip", "/v1/otlp/v1/traces", "application/json")
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    unknown = _post(api, b"{}", "compress", "/v1/otlp/v1/traces", "application/json")
    assert unknown.status_code == 415  # type: ignore[attr-defined]
