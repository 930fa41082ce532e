"""``outrider trends``, ``models`` and ``errors`` against a real control plane (uvicorn on 127.0.0.1, SQLite file)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from outrider.control_plane import schemas
from tests.console import console_support as support

Cli = Callable[..., subprocess.CompletedProcess[str]]


def seed(server: support.Server) -> None:
    server.post(*support.run_events("ok-1", "docs-site", outcome="succeeded", prs=2))  # 1500 tokens, $0.0123
    server.post(*support.run_events("bad-1", "docs-site", outcome="failed", cost=None))


def test_trends_json_and_table(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("trends", "--window", "1h", "--bucket", "1h", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = schemas.Trends.model_validate_json(result.stdout)
    assert sum(b.runs_finished for b in document.buckets) == 2
    assert sum(b.succeeded for b in document.buckets) == 1 and sum(b.prs for b in document.buckets) == 2
    finished = [b for b in document.buckets if b.runs_finished]
    if len(finished) == 1:  # both runs ended in the same hour (they do unless an hour boundary fell in between)
        only = finished[0]
        assert only.success_rate == 0.5 and only.tokens_per_successful_run == 1500
        assert only.cost_per_pr_usd == pytest.approx(0.0123 / 2)
    table = cli("trends", "--window", "1h", "--bucket", "1h", "--target", "docs-site")
    assert table.returncode == 0, table.stderr
    assert "Trends over 1h by 1h for docs-site" in table.stdout and "SUCCESS" in table.stdout


def test_models_json_and_table(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("models", "-o", "json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["models"]
    assert (row["provider"], row["model"], row["calls"], row["runs"]) == ("anthropic", "claude-sonnet", 2, 2)
    assert row["cost_usd"] == pytest.approx(0.0123) and row["tokens_per_call"] == 1500
    assert row["latency_p50_seconds"] is None and row["run_success_rate"] == 0.5
    table = cli("models", "--window", "1d")
    assert table.returncode == 0 and "claude-sonnet" in table.stdout and "50.0%" in table.stdout and "—" in table.stdout
    empty = cli("models", "--target", "nobody")
    assert empty.returncode == 0 and "No LLM calls" in empty.stdout


def test_bad_window_is_an_error(server: support.Server, cli: Cli) -> None:
    result = cli("trends", "--window", "7d", "--bucket", "1s", "-o", "json")
    assert result.returncode != 0 and result.stdout == ""
    assert "bucket" in json.loads(result.stderr)["error"]
    assert cli("models", "--window", "soon").returncode != 0


def test_errors_json_and_table(server: support.Server, cli: Cli) -> None:
    seed(server)
    result = cli("errors", "--window", "1h", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = schemas.ErrorAnalytics.model_validate_json(result.stdout)
    assert (document.failed, document.finished, document.failure_rate) == (1, 2, 0.5)
    assert [(g.key, g.failed, g.finished) for g in document.groups] == [("docs-site", 1, 2)]
    table = cli("errors", "--window", "1h")
    assert table.returncode == 0, table.stderr
    assert "1 of 2 runs" in table.stdout and "50.0%" in table.stdout and "docs-site" in table.stdout
    by_stage = cli("errors", "--by", "stage")
    assert by_stage.returncode == 0 and "STAGE" in by_stage.stdout
    assert cli("errors", "--by", "colour").returncode != 0  # refused by the API (422), said on stderr
