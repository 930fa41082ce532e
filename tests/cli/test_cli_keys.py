"""``outrider keys create|list|revoke`` and ``outrider audit`` against a real control plane (the installed command)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import httpx

from tests.console import console_support as support

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_create_list_revoke_and_audit(cli: Cli, server: support.Server) -> None:
    created = cli("keys", "create", "--role", "ingest", "--namespace", "team-a", "--namespace", "team-b",
                  "--target", "web", "--expires", "30d", "--name", "ci", "--format", "json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["secret"].startswith("otk_") and key["namespaces"] == ["team-a", "team-b"] and key["targets"] == ["web"]
    assert key["expires_at"] is not None
    listed = cli("keys", "list", "--format", "json")
    assert listed.returncode == 0 and [k["id"] for k in json.loads(listed.stdout)] == [key["id"]]
    assert key["secret"] not in listed.stdout
    table = cli("keys", "list")
    assert key["id"] in table.stdout and "team-a, team-b" in table.stdout and key["secret"] not in table.stdout
    worker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key['secret']}"}, timeout=30)
    event = {**support.event("run.created", runid="cli-1", target="web"), "namespace": "team-a"}
    assert worker.post("/v1/events", json=event).status_code == 202
    revoked = cli("keys", "revoke", key["id"])
    assert revoked.returncode == 0 and "Revoked key" in revoked.stdout
    assert worker.post("/v1/events", json=event).status_code == 401
    audit = cli("audit", "--format", "json")
    actions = [entry["action"] for entry in json.loads(audit.stdout)["items"]]
    assert actions[:2] == ["key.created", "key.revoked"]
    assert "key.revoked" in cli("audit", "--action", "key.revoked").stdout


def test_bad_key_arguments_and_a_non_admin_key(cli: Cli, server: support.Server) -> None:
    assert cli("keys", "create", "--role", "superuser").returncode != 0
    assert cli("keys", "create", "--role", "read", "--expires", "soon").returncode != 0
    reader = json.loads(cli("keys", "create", "--role", "read", "--format", "json").stdout)
    refused = cli("keys", "list", env={"OUTRIDER_TOKEN": reader["secret"]})
    assert refused.returncode != 0 and "admin only" in refused.stderr


def test_runs_in_two_namespaces(cli: Cli, server: support.Server) -> None:
    for namespace in ("team-a", "team-b"):
        server.post(*[{**event, "namespace": namespace} for event in support.run_events("web-1", "web")])
    table = cli("runs", "list")
    assert table.returncode == 0 and "NAMESPACE" in table.stdout and "team-a" in table.stdout and "team-b" in table.stdout
    only_a = json.loads(cli("runs", "list", "--namespace", "team-a", "--format", "json").stdout)["items"]
    assert [(r["namespace"], r["run_id"]) for r in only_a] == [("team-a", "web-1")]
    ambiguous = cli("runs", "show", "web-1")
    assert ambiguous.returncode != 0 and "several namespaces" in ambiguous.stderr
    shown = cli("runs", "show", "web-1", "-N", "team-b")
    assert shown.returncode == 0 and "team-b" in shown.stdout
    events = json.loads("[" + ",".join(cli("events", "-N", "team-b", "--format", "json").stdout.splitlines()) + "]")
    assert events and {e["event"]["namespace"] for e in events} == {"team-b"}
