"""Properties of the per-Target circuit breaker, driven by a hypothesis state machine.

Random sequences of admissions, Run outcomes (including stragglers admitted before a trip), lost
probes, clock advances and operator restarts (a round trip through ``Target.status.breaker``) must
never:

- have two half-open probes in flight at once (at most one Run admitted as a probe and not yet finished);
- admit anything while Open and still cooling down;
- skip Open: Closed never turns HalfOpen directly, and HalfOpen is only reached once a cooldown ended.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from outrider.common import k8s
from outrider.operator import breaker as breaker_module

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
THRESHOLD = 3
COOLDOWN = 60


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.breaker = breaker_module.Breaker()
        self.now = START
        self.running: set[str] = set()  # admitted, not finished
        self.probes: set[str] = set()  # admitted as probe, not finished or lost
        self.counter = 0
        self.previous_state = self.breaker.state

    def observe(self, new: breaker_module.Breaker) -> None:
        """Check the transition into ``new`` (never Closed → HalfOpen) and adopt it."""
        if new.state == k8s.BREAKER_HALF_OPEN and self.breaker.state == k8s.BREAKER_CLOSED:
            raise AssertionError("Closed → HalfOpen skipped Open")
        if new.state == k8s.BREAKER_HALF_OPEN and self.breaker.state == k8s.BREAKER_OPEN:
            assert self.breaker.cooldown_until is not None and self.now >= self.breaker.cooldown_until
        self.breaker = new

    @rule()
    def try_admit(self) -> None:
        advanced, _ = breaker_module.advance(self.breaker, self.now)
        self.observe(advanced)
        admit, is_probe = breaker_module.allows(self.breaker, self.now)
        if self.breaker.state == k8s.BREAKER_OPEN:
            assert not admit, "admitted while Open and cooling down"
        if not admit:
            return
        self.counter += 1
        run = f"run-{self.counter}"
        self.running.add(run)
        if is_probe:
            assert not self.probes, f"a second probe while {self.probes} is in flight"
            self.probes.add(run)
            self.observe(breaker_module.admit_probe(self.breaker, run))

    @precondition(lambda self: self.running)
    @rule(data=st.data(), succeeded=st.booleans())
    def finish(self, data: st.DataObject, succeeded: bool) -> None:
        run = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(run)
        self.probes.discard(run)
        new, _ = breaker_module.record(
            self.breaker,
            succeeded=succeeded,
            run=run,
            reason=None if succeeded else "JobFailed",
            now=self.now,
            failure_threshold=THRESHOLD,
            cooldown_seconds=COOLDOWN,
        )
        self.observe(new)

    @precondition(lambda self: self.probes)
    @rule()
    def lose_probe(self) -> None:
        run = sorted(self.probes)[0]
        self.probes.discard(run)
        self.running.discard(run)
        self.observe(breaker_module.probe_lost(self.breaker, run))

    @rule(seconds=st.sampled_from([1, 10, 30, 59, 60, 61, 120]))
    def tick(self, seconds: int) -> None:
        self.now += dt.timedelta(seconds=seconds)

    @rule()
    def restart_operator(self) -> None:
        """The breaker survives a restart through the Target's status (times in whole seconds)."""
        self.observe(breaker_module.from_status(breaker_module.to_status(self.breaker)))

    @invariant()
    def at_most_one_probe(self) -> None:
        assert len(self.probes) <= 1
        if self.breaker.probe_run is not None:
            assert self.breaker.state == k8s.BREAKER_HALF_OPEN

    @invariant()
    def open_has_a_deadline(self) -> None:
        if self.breaker.state == k8s.BREAKER_OPEN:
            assert self.breaker.cooldown_until is not None


TestBreaker = BreakerMachine.TestCase
TestBreaker.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
