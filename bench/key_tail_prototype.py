"""A prototype of deduplicating keys through an in-memory tail, against the store's direct inserts (not part of
``make bench``; the design was measured and not built: docs/performance.md, "Event ids", eleventh session).

The store deduplicates on (source, id) by inserting every key into a B-tree (``tables.event_keys``) in the append
transaction. With random ids (UUIDv4) each key dirties a page of its own, so SQLite writes ~1 page per event and
more as the index grows. The design probed here keeps the keys of the log's tail in memory instead: a key is new when
it is neither in that set nor in ``event_keys`` (looked up, not inserted), and the tail is merged into ``event_keys``
sorted, in chunks, once it holds ``tail_keys`` keys, so a merge touches each leaf page about once.

Both are driven here with plain ``sqlite3`` the way the appender commits under load: groups of 32 log rows of 40 KB
(one per request of 100 events) and their 3,200 keys per transaction, WAL, ``synchronous=FULL``, the appender's
32 MiB cache and 16,000-page checkpoints; keys are made before each step and not counted. Per step of ``step`` keys
it reports CPU µs per key, keys/s and bytes written per key (``/proc/self/io``), for prefixed ids (the worker SDK's
shape) and random ones.

    python -m bench.key_tail_prototype [steps] [step]
"""

from __future__ import annotations

import itertools
import json
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.key_shapes import written_bytes

GROUP_KEYS = 3200
LOG_ROWS_PER_GROUP = 32
LOG_ROW = "x" * 40_000
Key = tuple[str, str]

SCHEMA = (
    "CREATE TABLE event_keys (source VARCHAR(1024) NOT NULL, event_id VARCHAR(256) NOT NULL, "
    "PRIMARY KEY (source, event_id)) WITHOUT ROWID",
    "CREATE TABLE event_log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TEMP TABLE found (source TEXT, event_id TEXT)",
)
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA cache_size=-32768", "PRAGMA wal_autocheckpoint=16000")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def key_maker(random_ids: bool) -> Any:
    """A function giving the next ``n`` keys: 50 sources; ids random UUIDv4s or ``…-r<run>-<k>`` (20 per run)."""
    runs = itertools.count()

    def make(n: int) -> list[Key]:
        if random_ids:
            return [(f"/workers/org/repo-{index % 50}", str(uuid.uuid4())) for index in range(n)]
        keys: list[Key] = []
        while len(keys) < n:
            run = next(runs)
            keys += [(f"/workers/org/repo-{run % 50}", f"bench-1765000000-sqlite-batch100-c32-r0-r{run}-{k}") for k in range(20)]
        return keys[:n]

    return make


class Appender:
    """Appends groups of keys and log rows; ``tail_keys`` None: direct inserts (the store), else the tail design."""

    def __init__(self, path: Path, tail_keys: int | None, merge_chunk: int = 20_000) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        for statement in PRAGMAS + SCHEMA:
            self.db.execute(statement)
        self.tail_keys = tail_keys
        self.merge_chunk = merge_chunk
        self.tail: set[Key] = set()
        self._merging: list[Key] = []
        self._seq = 0

    def append(self, keys: list[Key]) -> int:
        """One group in one transaction; how many of its keys were duplicates."""
        self.db.execute("BEGIN")
        if self.tail_keys is None:
            duplicates = len(keys) - self.db.executemany(
                "INSERT INTO event_keys (source, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", keys).rowcount
        else:
            fresh = [key for key in keys if key not in self.tail]
            stored = self.db.executemany(
                "INSERT INTO temp.found SELECT ?, ? WHERE EXISTS "
                "(SELECT 1 FROM main.event_keys WHERE source = ? AND event_id = ?)",
                [(source, event_id, source, event_id) for source, event_id in fresh]).rowcount
            duplicates = len(keys) - len(fresh) + stored
            new = set(fresh)
            if stored:
                new.difference_update(self.db.execute("SELECT source, event_id FROM temp.found").fetchall())
                self.db.execute("DELETE FROM temp.found")
        for _ in range(LOG_ROWS_PER_GROUP):
            self._seq += 100
            self.db.execute("INSERT INTO event_log (seq, body) VALUES (?, ?)", (self._seq, LOG_ROW))
        self.db.execute("COMMIT")
        if self.tail_keys is not None:
            self.tail.update(new)  # only keys stored nowhere yet: a merged key sent again stays merged
            self._merge_step()
        return duplicates

    def _merge_step(self) -> None:
        """Merge one sorted chunk of the tail into ``event_keys`` once the tail is full (its own transaction)."""
        assert self.tail_keys is not None
        if not self._merging and len(self.tail) >= self.tail_keys:
            self._merging = sorted(self.tail)
        if not self._merging:
            return
        chunk, self._merging = self._merging[: self.merge_chunk], self._merging[self.merge_chunk :]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO event_keys (source, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", chunk)
        self.db.execute("COMMIT")
        self.tail.difference_update(chunk)


def measure(random_ids: bool, tail_keys: int | None, steps: int, step: int, workdir: Path) -> list[dict[str, Any]]:
    """Per step: keys stored before it, CPU µs per key, keys/s, bytes written per key, keys in the tail after it."""
    name = f"{'random' if random_ids else 'prefixed'}-{'direct' if tail_keys is None else 'tail'}.db"
    appender = Appender(workdir / name, tail_keys)
    make = key_maker(random_ids)
    figures = []
    for number in range(steps):
        groups = [make(GROUP_KEYS) for _ in range(max(1, step // GROUP_KEYS))]
        count = sum(len(group) for group in groups)
        written, cpu, started = written_bytes(), _cpu_seconds(), time.perf_counter()
        duplicates = sum(appender.append(group) for group in groups)
        elapsed = time.perf_counter() - started
        assert duplicates == 0, "fresh keys were taken for duplicates"
        figures.append({
            "keys_before": number * count,
            "cpu_us_per_key": round((_cpu_seconds() - cpu) / count * 1e6, 2),
            "keys_per_s": round(count / elapsed),
            "bytes_written_per_key": round((written_bytes() - written) / count),
            "tail": len(appender.tail),
        })
    appender.db.close()
    return figures


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    step = int(sys.argv[2]) if len(sys.argv) > 2 else 256_000
    results: dict[str, Any] = {"steps": steps, "step": step, "tail_keys": 250_000, "merge_chunk": 20_000, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="key-tail-") as folder:
        for random_ids in (False, True):
            for tail_keys in (None, 250_000):
                label = f"{'random' if random_ids else 'prefixed'} {'direct' if tail_keys is None else 'tail'}"
                results["runs"][label] = figures = measure(random_ids, tail_keys, steps, step, Path(folder))
                for row in figures:
                    print(f"{label:16} {row}", flush=True)
    output = Path(__file__).with_name("results-key-tail.json")
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
