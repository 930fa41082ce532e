"""A demo agent worker: reports a run's stage, LLM-usage, log and PR events through the worker SDK.

It does what a real worker does — report what it is doing with ``outrider.client`` (batched CloudEvents to
``POST /v1/events``, never blocking the work) — only its "work" is a few seconds of sleep. Token counts and
costs are drawn at random per call (this is a demo); the driver's client labels them ``/demo/workers``.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from outrider.client import run as run_module

#: Demo model prices in USD per million tokens (input, output); only used to make demo costs plausible.
MODELS = {("anthropic", "claude-sonnet-4"): (3.0, 15.0), ("openai", "gpt-4.1-mini"): (0.4, 1.6)}
FAILURES = [
    ("TimeoutError", "test", "tests did not finish within 600s"),
    ("PathViolation", "code", "agent tried to write outside the repository: /etc/hosts"),
    ("AssertionError", "test", "3 tests failed after the change"),
]


class Worker:
    """One run's worker: :meth:`work` posts its events over ``seconds`` and returns whether it succeeded."""

    def __init__(self, reporter: run_module.RunReporter, *, succeed: bool, opens_pr: bool,
                 seconds: float, stop: threading.Event, rng: random.Random) -> None:
        self.reporter, self.run, self.target = reporter, reporter.run_id, reporter.target
        self.succeed, self.opens_pr, self.seconds, self.stop, self.rng = succeed, opens_pr, seconds, stop, rng
        self.pr_number: int | None = None
        self.failure = rng.choice(FAILURES)

    def _post(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.reporter.emit(kind, data)  # buffered; the SDK's thread posts it

    def _pause(self, share: float) -> bool:
        """Sleep a share of the run's time; False when the demo is stopping or the Job was suspended."""
        return not self.stop.wait(self.seconds * share)

    def _llm(self, phase: str) -> None:
        (provider, model), (price_in, price_out) = self.rng.choice(list(MODELS.items()))
        tokens_in, tokens_out = self.rng.randint(800, 9000), self.rng.randint(150, 2500)
        self.reporter.usage(provider, model, phase=phase, input_tokens=tokens_in, output_tokens=tokens_out,
                            cost_usd=round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6),
                            latency_s=round(self.rng.uniform(0.8, 6.0), 2))

    def work(self, next_pr: int) -> bool | None:
        """Post the run's events; True/False for the outcome, None when interrupted (demo stop or drain)."""
        for stage, share in (("plan", 0.2), ("code", 0.45), ("test", 0.35)):
            self._post("run.stage.started", {"stage": stage})
            self._llm(stage)
            if stage == "code":
                self._post("run.log", {"level": "info", "message": f"editing {self.rng.randint(1, 9)} files"})
            if not self._pause(share):
                return None
            failing = not self.succeed and stage == self.failure[1]
            if failing:
                error_type, _, message = self.failure
                self._post("run.log", {"level": "error", "message": message})
                self._post("run.failed", {
                    "error_type": error_type, "stage": stage, "message": message,
                    "traceback": ("Traceback (most recent call last):\n"
                                  f'  File "/agent/loop.py", line 88, in run_stage\n    result = await self.{stage}()\n'
                                  f'  File "/agent/{stage}.py", line 41, in {stage}\n    raise {error_type}(message)\n'
                                  f"{error_type}: {message}")})
                return False
            self._post("run.stage.completed", {"stage": stage})
        if self.opens_pr:
            self.pr_number = next_pr
            self._post("pr.created", {"number": next_pr, "url": f"https://git.example.test/{self.target}/pull/{next_pr}"})
        return True
