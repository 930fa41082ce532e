"""``python -m outrider.demo`` (``make demo``): start everything, print where to look, run until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="outrider-demo", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="Console/API port (a free one is chosen when it is taken).")
    parser.add_argument("--seed", type=int, default=None, help="Random seed for the demo's outcomes.")
    args = parser.parse_args(argv)

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and `kill` both stop cleanly (also when started in the background, where SIGINT may be ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        import kmock  # noqa: F401 - only to say clearly what is missing
    except ImportError:
        print("The demo needs the test extra (KMock): .venv/bin/pip install -e '.[test]'", file=sys.stderr)
        return 2

    from outrider.demo import runner

    demo = runner.Demo(host=args.host, port=args.port, seed=args.seed)
    try:
        demo.start()
        print(runner.banner(demo.url, demo.token, demo.kubeconfig), flush=True)
        while True:
            time.sleep(1)
            if demo.operator.error is not None:
                print(f"the operator stopped: {demo.operator.error!r}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("\nstopping the demo…", flush=True)
        return 0
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
