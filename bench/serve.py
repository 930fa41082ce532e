"""``python -m bench.serve {noop,validate,ndjson} --port P --token T [--path F]``: serve one baseline under uvicorn.

The uvicorn options are the ones ``outrider control-plane`` uses (see ``UVICORN_OPTIONS``), so the
baselines and the real control plane differ only in what the endpoint does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from bench import baseline_app

#: Mirrors outrider.control_plane.server.serve: one process, default loop/http (uvloop, httptools), no access log.
UVICORN_OPTIONS = {"log_level": "info", "access_log": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["noop", "validate", "ndjson"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--path", type=Path, help="NDJSON file (ndjson only)")
    args = parser.parse_args()
    if args.kind == "noop":
        app = baseline_app.noop_app(args.token)
    elif args.kind == "validate":
        app = baseline_app.validate_app(args.token)
    else:
        if args.path is None:
            parser.error("ndjson needs --path")
        app = baseline_app.ndjson_app(args.token, args.path)
    uvicorn.run(app, host="127.0.0.1", port=args.port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
