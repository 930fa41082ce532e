"""What the shape of event ids costs the SQLite appender as history grows (not part of ``make bench``).

The store deduplicates on (source, id) with a B-tree of every key (``tables.event_keys``). Ids that share a prefix
per producer (the worker SDK's ``<session>-<n>``, the bench's ``<prefix>-r<run>-<n>``) land next to each other in
it, so a commit of thousands of events touches a few hundred of its pages; random ids (UUIDv4, what the
CloudEvents SDKs generate) land each on a page of its own, and once the index outgrows the appender's page cache
each key also reads its page first. Both shapes are appended here the way the writer process appends under load
(32 requests of 100 events per transaction, ``Store._commit_group`` with the appender's engine options,
``synchronous=FULL``, WAL), on a fresh file each, in steps of ``step`` events; each step reports the appender's
CPU per event, its rate and the bytes it wrote per event (WAL and checkpoints, ``/proc/self/io``). Validation is
done before each step and not counted; there is no projector.

    python -m bench.key_shapes [steps] [step]
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import payloads

REQUESTS_PER_COMMIT = 32
EVENTS_PER_REQUEST = 100


def written_bytes() -> int:
    """Bytes this process has caused to be written to storage so far (``/proc/self/io``)."""
    return int(re.search(r"write_bytes: (\d+)", Path("/proc/self/io").read_text()).group(1))  # type: ignore[union-attr]


def measure(random_ids: bool, steps: int = 8, step: int = 256_000, workdir: Path | None = None) -> list[dict[str, Any]]:
    """Per step of ``step`` events appended: keys stored before it, appender CPU µs per event, events/s, bytes
    written per event."""
    from outrider.common import events
    from outrider.control_plane import settings, store
    from outrider.control_plane.store import writer_process

    class Appender(store.Store):
        _engine_options = writer_process._ChildStore._engine_options  # the writer process's page cache and checkpoints

    directory = workdir or Path(tempfile.mkdtemp(prefix="key-shapes-"))
    path = directory / ("random.db" if random_ids else "prefixed.db")
    appender = Appender(settings.Settings(database_url=f"sqlite:///{path}", api_tokens="bench"))
    store.migrate(appender.engine)
    stream = payloads.event_stream("key-shapes", random_ids=random_ids)
    per_commit = REQUESTS_PER_COMMIT * EVENTS_PER_REQUEST
    figures = []
    try:
        for number in range(steps):
            groups = []
            for _ in range(max(1, step // per_commit)):
                bodies = [b"[" + b",".join(itertools.islice(stream, EVENTS_PER_REQUEST)) + b"]" for _ in range(REQUESTS_PER_COMMIT)]
                batches = [events.validate_json_fast(body, array=True) for body in bodies]
                for batch in batches:
                    assert batch is not None
                    events.fill_scope_defaults(batch, "default", None)
                groups.append(batches)
            count = sum(len(batch) for group in groups for batch in group)
            written, cpu, started = written_bytes(), time.process_time(), time.perf_counter()
            for group in groups:
                futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in group]
                appender._commit_group([store.Submission(batch, future) for batch, future in zip(group, futures, strict=True)])
                for future in futures:
                    assert future.result(timeout=0)[0] == len(group[0])
            elapsed = time.perf_counter() - started
            figures.append({
                "keys_before": number * count,
                "cpu_us_per_event": (time.process_time() - cpu) / count * 1e6,
                "events_per_s": count / elapsed,
                "bytes_written_per_event": (written_bytes() - written) / count,
            })
    finally:
        appender.engine.dispose()
    return figures


def main(argv: list[str]) -> None:
    steps = int(argv[0]) if argv else 8
    step = int(argv[1]) if len(argv) > 1 else 256_000
    results = {}
    for name, random_ids in (("prefixed", False), ("random", True)):
        results[name] = measure(random_ids, steps, step)
        for row in results[name]:
            print(f"{name:9} keys before {row['keys_before']:>10,}: {row['cpu_us_per_event']:6.1f} µs/event CPU, "
                  f"{row['events_per_s']:>9,.0f} events/s, {row['bytes_written_per_event']:>7,.0f} B written/event", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
