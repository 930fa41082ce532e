"""Outrider: keeps autonomous AI-agent runs on Kubernetes observable and under control.

One import package with three parts that do not import each other's internals:
``outrider.common`` (the shared contract: events, CRD names), ``outrider.control_plane``
(event ingestion, durable history, API, console, metrics) and ``outrider.operator``
(kopf operator: CRDs, Job admission, breakers, autonomy). ``outrider.cli`` ties them to
one command. The operator is not a top-level ``operator`` package because that name would
shadow Python's standard-library ``operator`` module.
"""

from importlib import metadata

try:
    __version__ = metadata.version("outrider")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
