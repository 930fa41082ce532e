"""What the figures were measured on: CPU count and model, memory, Python, SQLite, key library versions.

Recorded in ``results.json`` next to every run, because the figures mean nothing without it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import sys
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
