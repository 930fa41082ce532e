"""The client commands against a real control plane: JSON parses into the API models, filters work, exit codes."""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from outrider.control_plane import schemas
from tests.cli.conftest import cli_env, outrider_command
from tests.console import console_support as support

Cli = Callable[..., subprocess.CompletedProcess[str]]


def seed(server: support.Server) -> None:
    now = datetime.now(UTC)
    server.post(
        support.heartbeat(enabled=True, period=30, autonomy_mode="hold"),
        support.target_status("payments-api", health="Blocked", breaker_state="Open", consecutive_failures=2,
                              trips=1, cooldown_until=(now + timedelta(minutes=20)).isoformat(), pending_runs=2),
        support.target_status("docs-site", active_runs=1),
        *support.run_events("old-ok", "docs-site", start=now - timedelta(hours=3), prs=1),
        *support.run_events("new-ok", "docs-site", start=now - timedelta(minutes=20)),
        *support.run_events("new-fail", "payments-api", outcome="failed", start=now - timedelta(minutes=10)),
    )


def test_runs_list_json_is_pure_and_follows_the_schema(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("runs", "list", "--format", "json", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    page = schemas.Page[schemas.RunRecord].model_validate_json(result.stdout)
    assert [run.run_id for run in page.items] == ["new-fail", "new-ok", "old-ok"]
    assert page.next_cursor is None
    assert page.items[0].error_summary == "TimeoutError in code: tests did not finish in 600s"


def test_runs_list_filters_and_limit(server: support.Server, cli: Cli) -> None:
    seed(server)

    def ids(*args: str) -> list[str]:
        result = cli("runs", "list", "-o", "json", *args)
        assert result.returncode == 0, result.stderr
        return [item["run_id"] for item in json.loads(result.stdout)["items"]]

    assert ids("--target", "docs-site") == ["new-ok", "old-ok"]
    assert ids("--status", "failed") == ["new-fail"]
    assert ids("--since", "1h") == ["new-fail", "new-ok"]
    assert ids("--since", (datetime.now(UTC) - timedelta(minutes=15)).isoformat()) == ["new-fail"]
    assert ids("--target", "nobody") == []
    limited = json.loads(cli("runs", "list", "-o", "json", "--limit", "2").stdout)
    assert [item["run_id"] for item in limited["items"]] == ["new-fail", "new-ok"]
    assert limited["next_cursor"] is not None


def test_runs_list_table_and_fail_on_failed_exit_codes(server: support.Server, cli: Cli) -> None:
    seed(server)
    table = cli("runs", "list")
    assert table.returncode == 0
    assert "new-fail" in table.stdout and "TimeoutError in code" in table.stdout and "—" in table.stdout
    assert cli("runs", "list", "--fail-on-failed").returncode == 1
    assert cli("runs", "list", "--fail-on-failed", "--status", "succeeded").returncode == 0
    assert cli("runs", "list", "--fail-on-failed", "--target", "docs-site", "-o", "json").returncode == 0


def test_runs_show(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("runs", "show", "new-fail", "--format", "json")
    assert result.returncode == 0, result.stderr
    record = schemas.RunRecord.model_validate_json(result.stdout)
    assert record.status == schemas.RunStatus.FAILED and record.llm_usage is not None
    table = cli("runs", "show", "old-ok")
    assert table.returncode == 0
    for text in ("old-ok", "succeeded", "Stages", "plan", "LLM usage", "anthropic/claude-sonnet", "#700"):
        assert text in table.stdout
    assert "Traceback" not in table.stdout
    failed = cli("runs", "show", "new-fail").stdout  # a failed run shows the end of its traceback
    assert "Traceback (last 4 lines)" in failed and "TimeoutError: tests did not finish in 600s" in failed
    missing = cli("runs", "show", "no-such-run", "-o", "json")
    assert missing.returncode == 4
    assert json.loads(missing.stderr)["detail"]["error"] == "not_found"


def test_status_targets_and_autonomy_status(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("status", "--format", "json")
    assert result.returncode == 0, result.stderr
    status = schemas.SystemStatus.model_validate_json(result.stdout)
    assert status.state == schemas.SystemState.BLOCKED
    assert status.blocked_by == [schemas.BlockedBy.CIRCUIT_BREAKER]
    assert (status.pending_runs, status.active_runs) == (2, 1)
    table = cli("status")
    assert "blocked (circuit_breaker)" in table.stdout and "Circuit breaker open on payments-api" in table.stdout
    assert "Recent activity" in table.stdout

    targets = cli("targets", "-o", "json")
    states = [schemas.TargetState.model_validate(item) for item in json.loads(targets.stdout)]
    assert [t.target for t in states] == ["docs-site", "payments-api"]
    assert states[1].cooldown_remaining_seconds is not None and 0 < states[1].cooldown_remaining_seconds <= 1200
    assert "payments-api" in cli("targets").stdout

    autonomy = schemas.AutonomyStatus.model_validate_json(cli("autonomy", "status", "-o", "json").stdout)
    assert autonomy.enabled is True and autonomy.mode == "hold" and autonomy.source == "operator.heartbeat"
    assert "enabled" in cli("autonomy", "status").stdout


def test_events_history_as_ndjson(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("events", "--run", "new-fail", "--format", "json")
    assert result.returncode == 0, result.stderr
    stored = [schemas.StoredEvent.model_validate_json(line) for line in result.stdout.splitlines()]
    assert len(stored) == 9 and {s.event.runid for s in stored} == {"new-fail"}
    assert [s.seq for s in stored] == sorted(s.seq for s in stored)
    table = cli("events", "--run", "new-fail", "--type", "run.failed")
    assert "Run new-fail failed (TimeoutError)" in table.stdout


def test_events_follow_prints_new_events(server: support.Server) -> None:
    seed(server)
    env = cli_env(OUTRIDER_URL=server.url, OUTRIDER_TOKEN=support.TOKEN)
    process = subprocess.Popen([*outrider_command(), "events", "--follow", "--run", "live-run", "-o", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The follower prints nothing until live-run has events; post until one shows up (the stream may not
        # be connected for the first post, and replay by Last-Event-ID needs a first event seen).
        line = ""
        deadline = time.monotonic() + 30
        posted = 0
        while not line and time.monotonic() < deadline:
            server.post(support.event("run.log", runid="live-run", target="docs-site",
                                      data={"level": "info", "message": f"line {posted}"}))
            server.post(support.event("run.log", runid="other-run", target="docs-site",
                                      data={"level": "info", "message": "not for the follower"}))
            posted += 1
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                line = process.stdout.readline() if process.stdout else ""
        assert line, "no event arrived on the follower"
        stored = schemas.StoredEvent.model_validate_json(line)
        assert stored.event.runid == "live-run" and stored.event.type == "run.log"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_exit_codes_for_unreachable_unauthorised_and_usage(server: support.Server, cli: Cli) -> None:
    unreachable = cli("status", env={"OUTRIDER_URL": "http://127.0.0.1:9"})
    assert unreachable.returncode == 3 and "cannot reach the control plane" in unreachable.stderr
    wrong = cli("runs", "list", "-o", "json", env={"OUTRIDER_TOKEN": "not-the-token"})
    assert wrong.returncode == 3 and wrong.stdout == ""
    assert json.loads(wrong.stderr)["exit_code"] == 3
    assert cli("runs", "list", "--since", "yesterday").returncode == 2
    assert cli("runs", "list", "--status", "exploded").returncode == 2
    assert cli("runs", "list", "--format", "yaml").returncode == 2
    flags = subprocess.run([*outrider_command(), "status", "--url", server.url, "--token", support.TOKEN, "-o", "json"],
                           capture_output=True, text=True, timeout=60, env=cli_env())
    assert flags.returncode == 0 and json.loads(flags.stdout)["state"] == "error"  # no heartbeat: flags work too


def test_no_spinner_or_colour_when_piped(server: support.Server, cli: Cli) -> None:
    seed(server)
    env = {k: v for k, v in cli_env(OUTRIDER_URL=server.url, OUTRIDER_TOKEN=support.TOKEN).items() if k != "NO_COLOR"}
    result = subprocess.run([*outrider_command(), "runs", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0 and "new-fail" in result.stdout
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr


def test_client_follows_cursors_across_pages(server: support.Server) -> None:
    from outrider.cli import client

    seed(server)
    with client.Client(server.url, support.TOKEN) as api:
        items, cursor = api.pages("/v1/runs", {}, limit=None, page_max=2)
        assert [item["run_id"] for item in items] == ["new-fail", "new-ok", "old-ok"] and cursor is None
        items, cursor = api.pages("/v1/events", {"run_id": "new-fail"}, limit=5, page_max=2)
        assert len(items) == 5 and cursor is not None


def test_rich_markup_in_data_is_printed_literally(server: support.Server, cli: Cli) -> None:
    server.post(support.event("run.created", runid="r-markup", target="[bold]t[/bold]"),
                support.event("run.failed", runid="r-markup", target="[bold]t[/bold]",
                              data={"error_type": "Err", "message": "[red]not red[/red]"}))
    listing = cli("runs", "list")
    assert listing.returncode == 0 and "[bold]t[/bold]" in listing.stdout and "[red]not red[/red]" in listing.stdout
    shown = cli("runs", "show", "r-markup")
    assert shown.returncode == 0 and "[red]not red[/red]" in shown.stdout
