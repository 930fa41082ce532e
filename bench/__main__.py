"""``python -m bench`` (``make bench``): run every benchmark, print the tables, write ``bench/results.json``.

Environment: ``BENCH_QUICK=1`` for the small smoke sizes; ``BENCH_PARTS=ingestion,queries,operator`` to run
only some parts; ``BENCH_POSTGRES=0`` to leave PostgreSQL out; ``BENCH_OUTPUT=path`` to write the results
elsewhere; ``BENCH_KEEP=1`` to keep the temporary folder (databases, server logs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench import runner


def main() -> int:
    output = Path(os.environ.get("BENCH_OUTPUT") or Path(__file__).resolve().parent / "results.json")
    results = runner.run_all(output=output, keep=os.environ.get("BENCH_KEEP") == "1")
    return 0 if results.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
