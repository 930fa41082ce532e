"""What the figures were measured on: CPU count and model, memory, Python, SQLite, key library versions.

Recorded in ``results.json`` next to every run, because the figures mean nothing without it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average: other work on a shared machine shows up here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fsync_probe(folder: Path, count: int = 50) -> dict[str, float | None]:
    """Median and p90 of (4 KiB append + fdatasync) in ``folder``, in ms: what one durable commit costs right now.

    On a shared machine this moves by an order of magnitude with the neighbours' disk traffic, and every
    durable figure moves with it; it is measured at the start and the end of each run.
    """
    import statistics

    path = folder / "fsync-probe"
    samples: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    ordered = sorted(samples)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[int(len(ordered) * 0.9) - 1]}


#: The probe's fixed work: a ~3 KB JSON document, parsed and serialised again (what an ingesting server does most).
_CPU_PROBE_DOCUMENT = json.dumps([{"id": f"probe-{n}", "type": "run.llm_usage", "time": "2026-12-06T06:00:00Z",
                                   "data": {"model": "m", "input_tokens": n, "cost_usd": n / 1000}} for n in range(25)])


def cpu_probe(rounds: int = 300) -> float:
    """Microseconds one round of fixed pure-CPU work (parse and serialise ``_CPU_PROBE_DOCUMENT``) takes right now,
    the best of three tries (~30 ms in all).

    On a shared virtual machine the same code runs at a speed that moves from second to second (measured: a
    pure-CPU loop on an otherwise idle machine of this kind varied 1.9x within a minute). Recorded before every
    ingestion cell, it says how fast the machine was when that cell ran, so a ratio between two cells can be read
    against it; it does not correct any figure."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds // 3):
            json.dumps(json.loads(_CPU_PROBE_DOCUMENT))
        best = min(best, (time.perf_counter() - started) / (rounds // 3) * 1e6)
    return best


def info() -> dict[str, Any]:
    """A JSON-ready description of this machine and software stack."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mb": _mem_total_mb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "libraries": {
            name: _version(name)
            for name in (
                "fastapi",
                "starlette",
                "uvicorn",
                "uvloop",
                "httptools",
                "pydantic",
                "sqlalchemy",
                "psycopg",
                "kopf",
                "kmock",
            )
        },
        "load_average_at_start": load_average(),
    }
