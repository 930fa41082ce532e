"""``python -m bench.docs``: rewrite the figures in ``docs/performance.md`` from ``bench/results.json``.

The tables between the ``BEGIN GENERATED`` and ``END GENERATED`` markers are rendered from the results
file, so the document always shows one real run's figures (missing ones as "—"), never hand-copied
numbers. The prose around them (method, analysis) is written by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.report import DASH, fmt, fmt_measured

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN GENERATED: python -m bench.docs -->"
END = "<!-- END GENERATED -->"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _probe_spread(results: dict[str, Any]) -> str:
    """How far the machine's speed moved over the ingestion cells (``machine.cpu_probe`` before each one)."""
    probes = [value for cell in (results.get("ingestion") or {}).get("cells") or []
              for value in (cell.get("cpu_probe_us") or {}).get("values") or []]
    if not probes:
        return ""
    return f", {fmt(min(probes), 1)}–{fmt(max(probes), 1)} µs before the {len(probes)} ingestion cells"


def _probes(cell: dict[str, Any]) -> str:
    """The machine's speed before each repeat of a cell (``machine.cpu_probe``, µs: higher is slower)."""
    values = (cell.get("cpu_probe_us") or {}).get("values") or []
    return " / ".join(fmt(value) for value in values) if values else DASH


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run of {results['started_at']} ({'quick' if results['quick'] else 'full'}, {results.get('duration_s')} s): "
        f"{m['cpu_count']} × {m['cpu_model']}, {m.get('mem_total_mb')} MB, Python {m['python']}, SQLite {m['sqlite']}; "
        f"load average {m.get('load_average_at_start')} → {m.get('load_average_at_end')}; "
        f"4 KiB append + fdatasync median {fmt((m.get('fsync_at_start') or {}).get('median_ms'), 2)} ms at start, "
        f"{fmt((m.get('fsync_at_end') or {}).get('median_ms'), 2)} ms at end; "
        f"CPU probe {fmt(m.get('cpu_probe_us_at_start'), 1)} µs at start, {fmt(m.get('cpu_probe_us_at_end'), 1)} µs at end"
        f"{_probe_spread(results)}.",
        "",
    ]
    ingestion = results.get("ingestion") or {}
    if ingestion.get("cells"):
        ratios = {
            (r["server"], r["workload"], r["concurrency"], r["baseline"]): r["ratio"] for r in ingestion["ratios"]
        }
        lines += [
            "### Ingestion",
            "",
            _row(
                [
                    "server",
                    "workload",
                    "clients",
                    "events/s (median)",
                    "spread",
                    "p50 ms",
                    "p99 ms",
                    "× no-op",
                    "× NDJSON",
                    "server CPU",
                    "CPU probe µs",
                ]
            ),
            _row(["---"] * 2 + ["---:"] * 9),
        ]
        for c in ingestion["cells"]:
            key = (c["server"], c["workload"], c["concurrency"])
            spread = c["events_per_s"]["spread_pct"]
            lines.append(
                _row(
                    [
                        c["server"],
                        c["workload"],
                        str(c["concurrency"]),
                        fmt(c["events_per_s"]["median"]),
                        DASH if spread is None else f"{spread:.0f}%",
                        fmt(c["p50_ms"]["median"], 2),
                        fmt(c["p99_ms"]["median"], 2),
                        fmt(ratios.get((*key, "noop")), 2, "×") if (*key, "noop") in ratios else "",
                        fmt(ratios.get((*key, "ndjson")), 2, "×") if (*key, "ndjson") in ratios else "",
                        fmt(c["server_cpu_cores"]["median"], 2),
                        _probes(c),
                    ]
                )
            )
        lines.append("")
    projection = results.get("projection") or {}
    if projection and not projection.get("error"):
        lines += [
            "### Event log and projection",
            "",
            _row(["store", "replicas", "events", "accepted/s", "accepted and projected/s", "drain s",
                  "half-load rate/s", "lag p50 s", "lag p99 s", "lag max s"]),
            _row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
        ]
        for store, info in projection.items():
            half = info.get("half_load") or {}
            lines.append(_row([store, str(info.get("replicas", 1)), f"{info['events']:,}", fmt(info["accepted_per_s"]),
                               fmt(info["sustained_per_s"]), fmt(info["drain_seconds"], 2), fmt(half.get("rate_per_s")),
                               fmt(half.get("lag_p50_s"), 3), fmt(half.get("lag_p99_s"), 3), fmt(half.get("lag_max_s"), 3)]))
        lines.append("")
        for store, info in projection.items():
            before = info.get("before_log") or {}
            rate = before.get("events_per_s") or {}
            if rate.get("median"):
                lines += [f"The {store} control plane before the event log (commit `{before['commit'][:7]}`, every event folded in "
                          f"its request's transaction), in the same run: batches of 100 from 32 clients {fmt(rate['median'])} "
                          f"events/s (median of {rate['n']} cells, {fmt(rate['min'])}–{fmt(rate['max'])}, half just before the "
                          "sustained run and half just after it).", ""]
            elif before.get("skipped"):
                lines += [f"The {store} control plane before the event log was not measured: {before['skipped']}.", ""]
    elif projection:
        lines += ["### Event log and projection", "", f"Not measured: {projection.get('error')}", ""]
    queries = results.get("queries") or {}
    if queries.get("results"):
        seed = queries.get("seed") or {}
        for store, info in seed.items():
            lines.append(
                f"Seeded {store}: {info['events']:,} events, {info['runs']:,} runs, {info['targets']} targets in "
                f"{info['seconds']:.0f} s ({fmt(info['events_per_s'])} events/s) through `Store.submit`"
                + (f"; appended in {info['append_seconds']:.0f} s, projected {info['projection_caught_up_after_s']:.0f} s later."
                   if info.get("append_seconds") is not None else ".")
            )
        lines += [
            "",
            "### Queries at scale",
            "",
            _row(["store", "query", "samples", "p50 ms", "p99 ms", "max ms"]),
            _row(["---", "---", "---:", "---:", "---:", "---:"]),
        ]
        for q in queries["results"]:
            lines.append(
                _row(
                    [
                        q["store"],
                        q["name"],
                        str(q["samples"]),
                        fmt(q["p50_ms"], 2),
                        fmt(q["p99_ms"], 2),
                        fmt(q["max_ms"], 2),
                    ]
                )
            )
        lines.append("")
    limits = results.get("limits") or {}
    if limits.get("phases"):
        lines += [
            "### Limits under abuse",
            "",
            _row(["phase", "normal read p50 ms", "p99 ms", "max ms", "p99 / idle", "p99 / key at its rate",
                  "other key sent/s", "accepted/s"]),
            _row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
        ]
        for name, f in limits["phases"].items():
            lines.append(_row([name.replace("_", " "), fmt(f["p50_ms"], 2), fmt(f["p99_ms"], 2), fmt(f["max_ms"], 2),
                               fmt(f.get("p99_vs_idle"), 2, "×"), fmt(f.get("p99_vs_key_at_its_rate"), 2, "×"),
                               fmt(f.get("abuser_sent_per_s")), fmt(f.get("abuser_accepted_per_s"))]))
        lines.append("")
    elif limits:
        lines += ["### Limits under abuse", "", f"Not measured: {limits.get('error')}", ""]
    operator = results.get("operator") or {}
    if operator and not operator.get("error") and not operator.get("skipped"):
        lines += ["### Operator (KMock)", "", _row(["figure", "value"]), _row(["---", "---:"])]
        for key, value in operator.items():
            lines.append(_row([key, fmt(value, 3) if isinstance(value, float) else str(value)]))
        lines.append("")
    elif operator:
        lines += ["### Operator (KMock)", "", f"Not measured: {operator.get('skipped') or operator.get('error')}", ""]
    if results.get("targets"):
        lines += ["### Targets", "", _row(["check", "target", "measured", "met"]), _row(["---", "---", "---:", "---"])]
        for t in results["targets"]:
            lines.append(
                _row(
                    [
                        t["name"],
                        t["target"],
                        fmt_measured(t["measured"]),
                        {True: "yes", False: "**no**", None: DASH}[t["met"]],
                    ]
                )
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    doc = ROOT / "docs" / "performance.md"
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"{doc} has no {BEGIN} … {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}")
    print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
