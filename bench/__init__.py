"""Outrider's benchmarks: ``python -m bench`` (``make bench``) measures the control plane and the operator
against baselines run on the same machine in the same run, and writes ``bench/results.json``.

Absolute figures drift on shared machines, so every target is a ratio to a baseline measured alongside it:
a no-op FastAPI endpoint (the ceiling of the HTTP stack) and an fsync'd NDJSON append (the seed's store).
See ``docs/performance.md`` for the method and the latest figures.
"""
