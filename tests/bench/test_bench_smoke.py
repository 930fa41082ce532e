"""Keeps ``make bench`` from rotting: the whole harness on tiny sizes, checked for shape, never for speed.

Runs the ingestion matrix (every baseline and the real control plane on SQLite), the query part and the limits part
end to end, writes the results file, and checks that every figure is present and derived from real
requests (no errors). The operator part and PostgreSQL are left to ``make bench``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from bench import config as bench_config
from bench import runner

pytestmark = pytest.mark.slow


def tiny() -> bench_config.BenchConfig:
    return bench_config.BenchConfig(
        quick=True,
        repeats=1,
        cell_seconds=0.2,
        cell_max_requests=40,
        warmup_requests=2,
        concurrencies=[1, 4],
        batch_size=10,
        query_events=2000,
        query_runs=100,
        query_targets=5,
        query_samples=3,
        parts=["ingestion", "queries"],
        postgres=False,
    )


def test_bench_harness_runs_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    with (tmp_path / "console.txt").open("w") as console_file:
        results = runner.run_all(output=output, config=tiny(), console=Console(file=console_file, width=160))
    assert results["complete"], results["errors"]
    written = json.loads(output.read_text())
    assert written["machine"]["cpu_count"] >= 1
    assert written["machine"]["sqlite"]
    # how fast the machine ran fixed CPU work, at both ends of the run and before every ingestion cell
    assert written["machine"]["cpu_probe_us_at_start"] > 0 and written["machine"]["cpu_probe_us_at_end"] > 0

    cells = written["ingestion"]["cells"]
    servers = {cell["server"] for cell in cells}
    assert servers == {"noop", "validate", "ndjson", "sqlite", "sqlite-thread"}
    # two workloads at two concurrencies, and the batched one with random ids at the highest
    assert len(cells) == len(servers) * (2 * 2 + 1)
    assert {cell["concurrency"] for cell in cells if cell["workload"] == "batch10-uuid"} == {4}
    for cell in cells:
        assert cell["errors"] == 0, cell["error_samples"]
        assert cell["events_per_s"]["median"] > 0
        assert cell["p99_ms"]["median"] >= cell["p50_ms"]["median"] > 0
        assert cell["cpu_probe_us"]["n"] == written["config"]["repeats"] and cell["cpu_probe_us"]["min"] > 0
    ratios = {(r["server"], r["baseline"], r["workload"], r["concurrency"]) for r in written["ingestion"]["ratios"]}
    assert ("sqlite", "noop", "batch10", 4) in ratios and ("sqlite", "ndjson", "single", 1) in ratios
    assert ("sqlite", "noop", "batch10-uuid", 4) in ratios

    queries = written["queries"]["results"]
    assert {q["name"] for q in queries} >= {"/metrics", "/v1/runs/summary window=24h"}
    for query in queries:
        assert query["errors"] == 0, query["error_samples"]
        assert query["samples"] == 3
    assert written["queries"]["seed"]["sqlite"]["events"] == 2000

    names = [check["name"] for check in written["targets"]]
    assert any("single c=4 / NDJSON" in name for name in names)
    assert all(check["met"] in (True, False) for check in written["targets"])


def test_store_cpu_measures_every_part(tmp_path: Path) -> None:
    """``python -m bench.store_cpu`` (CPU per event of validation and the writer) runs and reports every part."""
    from bench import store_cpu

    figures = store_cpu.measure(groups=1, workdir=tmp_path)
    assert set(figures) == {"validate batch100", "validate single", "writer 32x100", "writer 32x1"}
    for figure in figures.values():
        assert figure["user_us"] >= 0 and figure["system_us"] >= 0 and figure["events_per_s"] > 0


def test_store_cpu_measures_the_app_in_process(tmp_path: Path) -> None:
    """``store_cpu.measure_app`` drives the real app with 32 clients posting single events and reports CPU per event."""
    from bench import store_cpu

    figure = store_cpu.measure_app(requests_per_client=2, workdir=tmp_path)
    assert figure["user_us"] >= 0 and figure["system_us"] >= 0 and figure["events_per_s"] > 0


def test_limits_bench_runs_every_phase(tmp_path: Path) -> None:
    """``bench/limits_bench.py``: every phase measured from real requests, and its targets judged."""
    config = tiny()
    config.parts, config.limits_samples = ["limits"], 20
    with (tmp_path / "console.txt").open("w") as console_file:
        results = runner.run_all(output=tmp_path / "results.json", config=config, console=Console(file=console_file, width=160))
    assert results["complete"], results["errors"]
    phases = results["limits"]["phases"]
    assert set(phases) == {"idle", "key_at_its_rate", "throttled_key", "slow_clients", "both", "saturating_key"}
    for figures in phases.values():
        assert figures["samples"] == 20 and figures["p99_ms"] >= figures["p50_ms"] > 0
    assert phases["throttled_key"]["abuser_sent_per_s"] > phases["throttled_key"]["abuser_accepted_per_s"] > 0
    assert {check["name"] for check in results["targets"]} >= {"limits: normal read p99, throttled key / key at its rate"}


def test_acceptance_bounds_probes_both_layouts_and_a_paused_projector(tmp_path: Path) -> None:
    """``python -m bench.acceptance_bounds``: both log layouts timed, and the pause really stops the projector (it
    spends no CPU during the paused load and catches up after it)."""
    from bench import acceptance_bounds

    layout = acceptance_bounds.log_layout(tmp_path, events=3200, repeats=1)
    assert layout["per_event_log_us"][0] > 0 and layout["per_request_log_us"][0] > 0
    paused = acceptance_bounds.projector_paused(tmp_path, pairs=1, seconds=1.0)
    running, stopped = paused["running"][0], paused["paused"][0]
    for figures in (running, stopped):
        assert figures["errors"] == 0, figures["error_samples"]
        assert figures["accepted_per_s"] > 0 and figures["server_us"] > 0
    assert running["projector_us"] > 0 and stopped["projector_us"] == 0


def test_defer_tradeoff_measures_a_budget_against_both_baselines(tmp_path: Path) -> None:
    """``python -m bench.defer_tradeoff``: one budget's cells, ratios, sustained rate and lag, all from real requests."""
    from bench import defer_tradeoff, servers

    config = tiny()
    config.sustained_seconds = config.lag_seconds = 0.5
    baselines = [servers.baseline("noop", defer_tradeoff.TOKEN, tmp_path).start(),
                 servers.baseline("ndjson", defer_tradeoff.TOKEN, tmp_path).start()]
    try:
        found = defer_tradeoff.sitting("2", baselines, tmp_path, config, repeats=1)
    finally:
        for server in baselines:
            server.stop()
    assert set(found["cells"]) == {"noop", "ndjson", "sqlite-defer-2"} and all(v[0] > 0 for v in found["cells"].values())
    assert found["vs_noop"] > 0 and found["vs_ndjson"] > 0
    assert found["sustained_per_s"] > 0 and found["lag_p99_s"] is not None


def test_key_shapes_appends_both_id_shapes(tmp_path: Path) -> None:
    """``python -m bench.key_shapes``: each id shape appended by the store's own group commit, every step measured."""
    from bench import key_shapes

    for random_ids in (False, True):
        steps = key_shapes.measure(random_ids, steps=2, step=3200, workdir=tmp_path)
        assert [step["keys_before"] for step in steps] == [0, 3200]
        for step in steps:
            assert step["cpu_us_per_event"] > 0 and step["events_per_s"] > 0 and step["bytes_written_per_event"] >= 0


def test_key_tail_prototype_deduplicates_before_and_after_a_merge(tmp_path: Path) -> None:
    """``python -m bench.key_tail_prototype``: the tail design (a design not built; docs/performance.md) finds a key
    again while it is in the tail and after it was merged, as the direct inserts do; every step is measured."""
    from bench import key_tail_prototype as prototype

    make = prototype.key_maker(random_ids=True)
    first, second = make(3200), make(3200)
    for tail_keys in (None, 3200):
        appender = prototype.Appender(tmp_path / f"dedup-{tail_keys}.db", tail_keys, merge_chunk=1000)
        assert appender.append(first) == 0
        assert appender.append(first) == 3200  # in the tail (or the index)
        for _ in range(4):  # the merge runs in chunks of 1000 after each group
            assert appender.append(second) == (0 if _ == 0 else 3200)
        assert not set(first) & appender.tail  # merged by now (the direct inserts keep no tail)
        assert appender.append(first) == 3200  # found in the index
        appender.db.close()
    for tail_keys in (None, 3200):
        steps = prototype.measure(False, tail_keys, steps=2, step=3200, workdir=tmp_path)
        assert [step["keys_before"] for step in steps] == [0, 3200]
        assert all(step["cpu_us_per_key"] > 0 and step["keys_per_s"] > 0 for step in steps)


def test_projection_bench_measures_the_store_before_the_event_log_in_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench/projection_bench.py``: the sustained rate, the lag at half of it, and the issue's baseline (the control
    plane before the event log, run from a ``git archive`` of its commit) measured in the same run and used by the
    target. A clone without that commit (shallow) runs the same machinery on ``HEAD`` instead of skipping."""
    import subprocess

    from bench import servers as bench_servers

    def has(commit: str) -> bool:
        return subprocess.run(["git", "-C", str(bench_servers.REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                              capture_output=True, check=False).returncode == 0

    commit = bench_servers.BEFORE_LOG_COMMIT
    if not has(commit):
        if not has("HEAD"):
            pytest.skip("SKIPPED: this checkout is not a git repository: the bench cannot run older code from git")
        print(f"this clone has no commit {commit[:12]} (shallow?): the baseline machinery runs on HEAD")
        commit = "HEAD"
        monkeypatch.setattr(bench_servers, "BEFORE_LOG_COMMIT", commit)
    config = tiny()
    config.parts, config.sustained_seconds, config.lag_seconds = ["projection"], 1.0, 0.5
    with (tmp_path / "console.txt").open("w") as console_file:
        results = runner.run_all(output=tmp_path / "results.json", config=config, console=Console(file=console_file, width=160))
    assert results["complete"], results["errors"]
    sqlite = results["projection"]["sqlite"]
    assert sqlite["errors"] == 0 and sqlite["sustained_per_s"] > 0 and sqlite["half_load"]["samples"] > 0
    before = sqlite["before_log"]
    assert before.get("commit") == commit, before
    assert before["events_per_s"]["n"] == 2 * config.repeats and before["events_per_s"]["min"] > 0
    check = next(c for c in results["targets"] if "accepted and projected" in c["name"])
    assert "same run" in check["name"] and check["measured"] == pytest.approx(sqlite["sustained_per_s"] / before["events_per_s"]["median"])
