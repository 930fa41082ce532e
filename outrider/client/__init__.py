"""Outrider's worker SDK: report a run's events to the control plane without ever blocking the agent.

    from outrider import client

    with client.Client() as outrider:            # OUTRIDER_URL, OUTRIDER_TOKEN from the environment
        run = outrider.run("run-42", "acme/web")
        run.started()
        with run.stage("plan"):
            run.usage("anthropic", "claude-sonnet-4", input_tokens=1200, output_tokens=300, cost_usd=0.008)
        run.succeeded()

It depends only on ``outrider.common`` (the event contract), httpx and the standard library; an
import-linter contract keeps it that way. See docs/worker-sdk.md.
"""

from __future__ import annotations

from outrider.client import emitter, run

Client = emitter.Client
ClientError = emitter.ClientError
Stats = emitter.Stats
RunReporter = run.RunReporter

__all__ = ["Client", "ClientError", "RunReporter", "Stats", "emitter", "run"]
