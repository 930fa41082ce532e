"""``outrider runs watch``: one run followed live in a terminal (or as JSON lines), until it finishes; and ``runs
show`` listing stages in the order the run entered them. A real control plane and the installed command."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.cli.conftest import cli_env, outrider_command
from tests.console import console_support as support

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _start(server: support.Server, run: str) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    server.post(
        support.event("run.created", runid=run, target="docs-site", at=t0),
        support.event("run.started", runid=run, target="docs-site", at=t0),
        support.event("run.stage.started", runid=run, target="docs-site", at=t0, data={"stage": "search"}),
    )


def _watch(server: support.Server, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*outrider_command(), "runs", "watch", *args, "--interval", "0.3"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(OUTRIDER_URL=server.url, OUTRIDER_TOKEN=support.TOKEN))


def _wait_for_output(process: subprocess.Popen[str], seconds: float = 20) -> None:
    time.sleep(1.5)  # it has read the run and its history (polled every 0.3 s)
    assert process.poll() is None, process.communicate()


def test_watch_follows_a_run_until_it_succeeds(server: support.Server) -> None:
    _start(server, "w-ok")
    process = _watch(server, "w-ok")
    _wait_for_output(process)
    server.post(support.event("run.progress", runid="w-ok", target="docs-site",
                              data={"stage": "search", "iteration": 4, "max_iterations": 16}))
    time.sleep(1.5)
    server.post(support.event("run.stage.completed", runid="w-ok", target="docs-site", data={"stage": "search"}),
                support.event("run.succeeded", runid="w-ok", target="docs-site"))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    for text in ("run.created", "run.stage.started", "stage search", "iteration 4/16 (25%)", "run.succeeded", "succeeded"):
        assert text in out, (text, out)
    assert out.count("run.progress") == 1  # each event once, however many looks
    assert "Fetching" not in err  # no spinner when stderr is not a terminal


def test_watch_as_json_lines_exits_1_when_the_run_fails(server: support.Server) -> None:
    _start(server, "w-bad")
    process = _watch(server, "w-bad", "--format", "json")
    _wait_for_output(process)
    server.post(support.event("run.failed", runid="w-bad", target="docs-site", data={"error_type": "OOMKilled", "message": "killed"}))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event"]["event"]["type"] for line in lines if "event" in line][-1] == "run.failed"
    assert lines[-1]["run"]["status"] == "failed"


def test_watch_an_unknown_run_is_not_found(cli: Cli) -> None:
    result = cli("runs", "watch", "nobody", "-o", "json")
    assert result.returncode == 4 and json.loads(result.stderr)["detail"]["error"] == "not_found"


def test_show_lists_stages_in_the_order_the_run_entered_them(server: support.Server, cli: Cli) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    server.post(*[support.event(kind, runid="ordered", target="docs-site", at=t0 + timedelta(seconds=i), data={"stage": stage})
                  for i, (kind, stage) in enumerate([("run.stage.started", "test"), ("run.stage.completed", "test"),
                                                     ("run.stage.started", "code"), ("run.stage.completed", "code"),
                                                     ("run.stage.started", "build")])])
    out = cli("runs", "show", "ordered").stdout
    assert out.index("test") < out.index("code") < out.index("build")


def test_runs_summary_for_everything_and_for_one_target(server: support.Server, cli: Cli) -> None:
    server.post(*support.run_events("s-ok", "docs-site"), *support.run_events("s-bad", "payments-api", outcome="failed"))
    everything = json.loads(cli("runs", "summary", "-o", "json").stdout)
    assert everything["total"] == 2 and everything["target"] is None and everything["success_rate"] == 0.5
    one = cli("runs", "summary", "--target", "payments-api", "-o", "json")
    assert one.returncode == 0, one.stderr
    narrowed = json.loads(one.stdout)
    assert (narrowed["total"], narrowed["counts"]["failed"], narrowed["target"]) == (1, 1, "payments-api")
    assert narrowed["latest_failure"]["run_id"] == "s-bad"
    table = cli("runs", "summary", "--target", "docs-site").stdout
    assert "target docs-site" in table and "100.0%" in table and "1 succeeded" in table


def test_tables_keep_their_headers_in_an_80_column_terminal(server: support.Server, cli: Cli) -> None:
    server.post(*support.run_events("narrow-1", "docs-site", outcome="failed"))
    out = cli("runs", "list", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    for header in ("RUN", "TARGET", "STATUS", "CREATED", "DURATION", "TOKENS", "COST", "PRS", "ERROR"):
        assert header in out, (header, "\n" + out)
    forced = cli("runs", "list", env={"FORCE_COLOR": "1"})  # colour forced into a pipe: still no spinner on stderr
    assert forced.returncode == 0 and forced.stderr == ""


def test_help_shows_flags_as_flags(cli: Cli) -> None:
    out = cli("runs", "list", "--help").stdout
    assert "--fail-on-failed" in out and "<bool>" not in out  # a plain flag, not an option taking a boolean
    assert "--limit <int range>" in out  # an option that takes a value says what
