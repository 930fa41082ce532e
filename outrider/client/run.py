"""One run's reporter: typed helpers that emit the run's events (stages, LLM usage, progress, logs, outcome).

``client.run(run_id, target)`` returns a :class:`RunReporter`. Its methods build the ``data`` of each
event type from keyword arguments and hand the event to the client's buffer; like ``Client.emit`` they
never wait on the network.

A stage is a context manager: ``with run.stage("plan"):`` emits ``run.stage.started`` on entry and
``run.stage.completed`` on a normal exit. When an exception escapes the block the stage did not complete,
so no ``run.stage.completed`` is sent; instead, by default (``fail_run=True``), the reporter emits
``run.failed`` with ``error_type`` (the exception's class name), ``message``, ``stage`` and, unless
``include_traceback=False``, the formatted traceback — then re-raises. ``fail_run=False`` records an error
``run.log`` line instead and leaves the outcome to the caller (an agent that recovers from a failed stage).
Only one terminal event is sent per reporter: once the run failed or succeeded, outer stages that see the
same exception do not report it again.
"""

from __future__ import annotations

import contextlib
import traceback as traceback_module
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outrider.client import emitter


class RunReporter:
    """Emits the events of run ``run_id`` (on ``target``) through ``client``."""

    def __init__(self, client: emitter.Client, run_id: str, target: str | None = None, *, include_traceback: bool = True) -> None:
        self.client = client
        self.run_id = run_id
        self.target = target
        self.include_traceback = include_traceback
        self.finished: str | None = None  # the terminal event type sent, if any
        self._stages: list[str] = []

    @property
    def current_stage(self) -> str | None:
        """The innermost open stage, or None outside every ``stage`` block."""
        return self._stages[-1] if self._stages else None

    def emit(self, type: str, data: dict[str, Any] | None = None, **options: Any) -> str:
        """Any event of this run (also types Outrider does not know); its id."""
        return self.client.emit(type, runid=self.run_id, target=self.target, data=data, **options)

    # --- lifecycle ----------------------------------------------------------------------------------

    def started(self) -> str:
        return self.emit("run.started")

    def succeeded(self) -> str:
        self.finished = "run.succeeded"
        return self.emit("run.succeeded")

    def failed(self, error_type: str | None = None, message: str | None = None, *, stage: str | None = None,
               traceback: str | None = None) -> str:
        """``run.failed``; ``stage`` defaults to the current stage."""
        self.finished = "run.failed"
        data = {"error_type": error_type, "message": message, "stage": stage or self.current_stage, "traceback": traceback}
        return self.emit("run.failed", {key: value for key, value in data.items() if value is not None})

    def cancelled(self) -> str:
        self.finished = "run.cancelled"
        return self.emit("run.cancelled")

    @contextlib.contextmanager
    def stage(self, name: str, *, fail_run: bool = True) -> Iterator[RunReporter]:
        """``run.stage.started`` now, ``run.stage.completed`` at a normal exit; on an exception see the module docstring."""
        self.emit("run.stage.started", {"stage": name})
        self._stages.append(name)
        try:
            yield self
        except BaseException as exc:
            if isinstance(exc, GeneratorExit):
                raise
            message = str(exc) or type(exc).__name__
            if fail_run and self.finished is None:
                trace = "".join(traceback_module.format_exception(exc)) if self.include_traceback else None
                self.failed(type(exc).__name__, message[:65536], stage=name, traceback=trace[-262144:] if trace else None)
            elif not fail_run:
                self.log("error", f"stage {name} raised {type(exc).__name__}: {message}"[:65536])
            raise
        else:
            self.emit("run.stage.completed", {"stage": name})
        finally:
            self._stages.pop()

    # --- what happens during the run ----------------------------------------------------------------

    def usage(self, provider: str, model: str, *, phase: str | None = None, input_tokens: int, output_tokens: int,
              cost_usd: float | None = None, latency_s: float | None = None, error: str | None = None) -> str:
        """One LLM call (``run.llm_usage``); ``phase`` defaults to the current stage, ``error`` marks a failed call."""
        data: dict[str, Any] = {"provider": provider, "model": model, "phase": phase or self.current_stage,
                                "input_tokens": input_tokens, "output_tokens": output_tokens,
                                "cost_usd": cost_usd, "latency_s": latency_s, "error": error}
        return self.emit("run.llm_usage", {key: value for key, value in data.items() if value is not None})

    def progress(self, iteration: int, max_iterations: int | None = None, *, stage: str | None = None) -> str:
        """An iteration of a stage's loop (``run.progress``); ``stage`` defaults to the current stage."""
        data: dict[str, Any] = {"stage": stage or self.current_stage, "iteration": iteration}
        if max_iterations is not None:
            data["max_iterations"] = max_iterations
        return self.emit("run.progress", data)

    def log(self, level: str, message: str) -> str:
        """A log line kept with the run; ``level`` is debug, info, warning, error or critical."""
        return self.emit("run.log", {"level": level, "message": message})

    def retry(self, **data: Any) -> str:
        return self.emit("run.retry", data)

    def pr_created(self, number: int, url: str) -> str:
        return self.emit("pr.created", {"number": number, "url": url})

    def artifact(self, key: str, kind: str, *, url: str | None = None, bytes: int | None = None,
                 sha256: str | None = None) -> str:
        """Something the run stored elsewhere (``run.artifact``); a later call with the same key replaces it."""
        data: dict[str, Any] = {"key": key, "kind": kind, "url": url, "bytes": bytes, "sha256": sha256}
        return self.emit("run.artifact", {k: v for k, v in data.items() if v is not None})
