"""The operator bench's API server (``bench.kmock_server``) behaves like kube-apiserver where the operator relies on it.

The server runs as the bench runs it (``python -m bench.kmock_server`` in its own process); the checks are the
API semantics its docstring promises: resourceVersion bumps and preconditions, silent no-op writes, generation on
spec changes, status subresource scoping, finalizers, selectors, and watches that resume from a list's version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = "/apis/outrider.dev/v1alpha1/namespaces/default/runs"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    process = subprocess.Popen([sys.executable, "-m", "bench.kmock_server"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, cwd=REPO, env={"PYTHONPATH": str(REPO)})  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline().decode().split()
    assert line and line[0] == "URL", line
    with httpx.Client(base_url=line[1], timeout=10) as client:
        yield client
    process.stdin.close()
    process.wait(10)


def run(api: httpx.Client, name: str, **labels: str) -> dict:
    body = {"apiVersion": "outrider.dev/v1alpha1", "kind": "Run",
            "metadata": {"name": name, "labels": labels}, "spec": {"target": "repo-a"}}  # fmt: skip
    response = api.post(RUNS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def patch(api: httpx.Client, path: str, body: dict) -> httpx.Response:
    return api.patch(path, content=json.dumps(body), headers=MERGE)


def test_create_sets_server_fields_and_refuses_a_duplicate(api: httpx.Client) -> None:
    created = run(api, "c1")
    meta = created["metadata"]
    assert meta["namespace"] == "default" and meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    duplicate = api.post(RUNS, json={"metadata": {"name": "c1"}, "spec": {}})
    assert duplicate.status_code == 409 and duplicate.json()["reason"] == "AlreadyExists"
    assert api.get(f"{RUNS}/c1").json() == created
    missing = api.get(f"{RUNS}/nope")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"


def test_resource_version_precondition_and_no_op_writes(api: httpx.Client) -> None:
    version = run(api, "p1")["metadata"]["resourceVersion"]
    written = patch(api, f"{RUNS}/p1/status", {"metadata": {"resourceVersion": version}, "status": {"phase": "Admitted"}})
    assert written.status_code == 200 and written.json()["status"] == {"phase": "Admitted"}
    newer = written.json()["metadata"]["resourceVersion"]
    assert int(newer) > int(version)
    stale = patch(api, f"{RUNS}/p1/status", {"metadata": {"resourceVersion": version}, "status": {"phase": "Pending"}})
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    assert api.get(f"{RUNS}/p1").json()["status"] == {"phase": "Admitted"}
    same = patch(api, f"{RUNS}/p1/status", {"status": {"phase": "Admitted"}})
    assert same.json()["metadata"]["resourceVersion"] == newer


def test_status_subresource_scoping_and_generation(api: httpx.Client) -> None:
    run(api, "s1")
    main = patch(api, f"{RUNS}/s1", {"spec": {"target": "repo-b"}, "status": {"phase": "Succeeded"},
                                     "metadata": {"labels": {"team": "x"}}}).json()  # fmt: skip
    assert main["spec"]["target"] == "repo-b" and "status" not in main
    assert main["metadata"]["labels"] == {"team": "x"} and main["metadata"]["generation"] == 2
    status = patch(api, f"{RUNS}/s1/status", {"spec": {"target": "repo-c"}, "status": {"phase": "Running", "x": 1}})
    assert status.json()["spec"]["target"] == "repo-b" and status.json()["status"] == {"phase": "Running", "x": 1}
    assert status.json()["metadata"]["generation"] == 2
    removed = patch(api, f"{RUNS}/s1/status", {"status": {"x": None}}).json()
    assert removed["status"] == {"phase": "Running"}


def test_label_selectors_and_finalizers(api: httpx.Client) -> None:
    run(api, "l1", team="a")
    run(api, "l2", team="b")

    def names(selector: str) -> set[str]:
        items = api.get(RUNS, params={"labelSelector": selector}).json()["items"]
        return {i["metadata"]["name"] for i in items}

    assert names("team=a") == {"l1"}
    assert names("team!=a") >= {"l2"} and "l1" not in names("team!=a")
    assert {"l1", "l2"} <= names("team") and not names("team") & names("!team")
    assert api.get(RUNS, params={"labelSelector": "team in (a,b)"}).status_code == 400
    patch(api, f"{RUNS}/l1", {"metadata": {"finalizers": ["outrider.dev/test"]}})
    deleting = api.delete(f"{RUNS}/l1").json()
    assert deleting["metadata"]["deletionTimestamp"]
    assert api.get(f"{RUNS}/l1").status_code == 200
    patch(api, f"{RUNS}/l1", {"metadata": {"finalizers": None}})
    assert api.get(f"{RUNS}/l1").status_code == 404
    api.delete(f"{RUNS}/l2")
    assert api.get(f"{RUNS}/l2").status_code == 404


def test_watch_resumes_from_the_list_version_in_order(api: httpx.Client) -> None:
    listed = api.get(RUNS).json()
    since = listed["metadata"]["resourceVersion"]
    run(api, "w1")
    patch(api, f"{RUNS}/w1/status", {"status": {"phase": "Admitted"}})
    api.delete(f"{RUNS}/w1")
    params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"}
    with api.stream("GET", RUNS, params=params) as response:
        events = [json.loads(line) for line in response.iter_lines() if line.strip()]  # ends after timeoutSeconds
    mine = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert mine == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)
    # Without a version, a watch starts with the current objects (here: only those still present).
    with api.stream("GET", RUNS, params={"watch": "true", "timeoutSeconds": "1"}) as response:
        initial = [json.loads(line) for line in response.iter_lines() if line.strip()]
    current = {i["metadata"]["name"] for i in api.get(RUNS).json()["items"]}
    assert {e["object"]["metadata"]["name"] for e in initial} == current
    assert all(e["type"] == "ADDED" for e in initial)


def test_requests_are_counted_by_verb_and_resource(api: httpx.Client) -> None:
    before = api.get("/bench/requests").json()
    run(api, "n1")
    patch(api, f"{RUNS}/n1/status", {"status": {"phase": "Running"}})
    patch(api, f"{RUNS}/n1/status", {"status": {"phase": "Succeeded"}})
    api.get(f"{RUNS}/n1")
    after = api.get("/bench/requests").json()
    grown = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grown == {"POST runs": 1, "PATCH runs/status": 2, "GET runs": 1}
