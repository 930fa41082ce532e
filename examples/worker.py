"""A complete Outrider worker: one agent run reported through the worker SDK (``outrider.client``).

Run it against a control plane:

    OUTRIDER_URL=http://127.0.0.1:8000 OUTRIDER_TOKEN=... OUTRIDER_RUN_ID=run-42 OUTRIDER_TARGET=acme/web \
        python examples/worker.py [--fail]

In a cluster the operator's Job sets OUTRIDER_RUN_ID and OUTRIDER_TARGET; here they default to a fresh
run id and ``example/repo``. The "agent" is a stand-in: its LLM calls are functions that return token
counts, so the script runs anywhere. ``--fail`` makes the test stage raise, to show how a failure is
reported. The exit code is 0 when every event was delivered, 1 when the run failed, 2 when events were
left undelivered.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from outrider import client


def call_llm(prompt: str) -> tuple[str, int, int]:
    """Stand-in for a real LLM call: (answer, input tokens, output tokens)."""
    return f"ok: {prompt[:20]}", len(prompt.split()) * 4, 120


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fail", action="store_true", help="make the test stage raise")
    args = parser.parse_args()
    run_id = os.environ.get("OUTRIDER_RUN_ID") or f"example-{uuid.uuid4().hex[:8]}"
    target = os.environ.get("OUTRIDER_TARGET") or "example/repo"

    with client.Client(source=f"/workers/example/{run_id}") as outrider:  # OUTRIDER_URL, OUTRIDER_TOKEN
        run = outrider.run(run_id, target)
        run.started()
        try:
            with run.stage("plan"):
                started = time.monotonic()
                _, tokens_in, tokens_out = call_llm("Plan the change that fixes the flaky test in ci.yml")
                run.usage("anthropic", "claude-sonnet-4", input_tokens=tokens_in, output_tokens=tokens_out,
                          cost_usd=round((tokens_in * 3 + tokens_out * 15) / 1e6, 6), latency_s=time.monotonic() - started)
            with run.stage("code"):
                for iteration in range(1, 4):
                    run.progress(iteration, 3)
                    run.log("info", f"edit {iteration}: applied patch hunk")
            with run.stage("test"):
                if args.fail:
                    raise AssertionError("3 tests failed after the change")
                run.log("info", "all tests passed")
            run.pr_created(101, f"https://git.example.test/{target}/pull/101")
            run.succeeded()
        except AssertionError:
            pass  # the stage already reported run.failed with the traceback
        delivered = outrider.flush(timeout=30)
        stats = outrider.stats()
    print(f"run {run_id}: {run.finished}; events emitted {stats.emitted}, delivered {stats.delivered}, "
          f"dropped {stats.dropped}, rejected {stats.rejected}")
    if not delivered:
        return 2
    return 1 if run.finished == "run.failed" else 0


if __name__ == "__main__":
    sys.exit(main())
