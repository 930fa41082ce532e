"""The circuit breaker end to end against KMock, with 1-second cooldowns: trip, cooldown, probe, close or reopen."""

from __future__ import annotations

from operator_harness import Cluster, Operator, assert_stored_objects_fit_the_crds, wait_for

from outrider.operator import kube


def breaker(cluster: Cluster) -> dict:
    return cluster.target_status("repo-a").get("breaker") or {}


def admitted(cluster: Cluster, run: str) -> bool:
    job = cluster.job(run)
    return job is not None and job["spec"]["suspend"] is False


def fail(cluster: Cluster, run: str, reason: str = "BackoffLimitExceeded") -> None:
    wait_for(lambda: admitted(cluster, run), what=f"{run} admitted")
    cluster.start_job(run)
    cluster.finish_job(run, ok=False, reason=reason)
    wait_for(lambda: cluster.run_status(run).get("breakerRecorded"), what=f"{run} counted")


def succeed(cluster: Cluster, run: str) -> None:
    wait_for(lambda: admitted(cluster, run), what=f"{run} admitted")
    cluster.start_job(run)
    cluster.finish_job(run, ok=True)
    wait_for(lambda: cluster.run_status(run).get("breakerRecorded"), what=f"{run} counted")


def trip(cluster: Cluster) -> None:
    cluster.run("f1", "repo-a")
    fail(cluster, "f1")
    assert breaker(cluster)["consecutiveFailures"] == 1 and breaker(cluster)["state"] == "Closed"
    cluster.run("f2", "repo-a")
    fail(cluster, "f2", reason="DeadlineExceeded")


def test_trip_cooldown_probe_success_closes(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=3, circuitBreaker={"failureThreshold": 2, "cooldownSeconds": 1})
    operator.start()
    trip(cluster)
    b = breaker(cluster)
    assert (b["state"], b["trips"], b["consecutiveFailures"]) == ("Open", 1, 2)
    assert b["lastFailure"]["run"] == "f2" and b["lastFailure"]["reason"] == "DeadlineExceeded" and b["cooldownUntil"]
    status = cluster.target_status("repo-a")
    assert (status["health"], status["healthReason"]) == ("Blocked", "CircuitOpen")
    # kopf posts Kubernetes Events from a background queue, after the status patch: wait for them.
    wait_for(lambda: any(e["reason"] == "CircuitOpen" and e["type"] == "Warning" for e in cluster.events_about("repo-a")),
             what="CircuitOpen Event")
    # While Open, new Runs wait; after the 1 s cooldown exactly one is admitted as the probe.
    cluster.run("p1", "repo-a")
    cluster.run("p2", "repo-a")
    wait_for(lambda: cluster.run_status("p1").get("probe") is True, what="probe admitted after cooldown")
    # The Run's status is written before its Job is unsuspended (a crash in between only re-admits): wait for both.
    wait_for(lambda: admitted(cluster, "p1"), what="probe Job unsuspended")
    # p2 was already held as CircuitOpen before the cooldown ended: wait for the half-open pass's own writes.
    wait_for(lambda: cluster.run_status("p2").get("reason") == "CircuitOpen"
             and "waiting for the probe Run p1" in cluster.run_status("p2")["message"], what="second run held")
    assert not admitted(cluster, "p2")
    wait_for(lambda: (breaker(cluster).get("state"), breaker(cluster).get("probeRun")) == ("HalfOpen", "p1"),
             what="Target status shows the probe")
    succeed(cluster, "p1")
    wait_for(lambda: breaker(cluster).get("state") == "Closed", what="breaker closed")
    b = breaker(cluster)
    assert b["consecutiveFailures"] == 0 and b["trips"] == 1 and "cooldownUntil" not in b
    wait_for(lambda: admitted(cluster, "p2"), what="held run admitted once closed")
    wait_for(lambda: any(e["reason"] == "CircuitClosed" for e in cluster.events_about("repo-a")), what="CircuitClosed Event")


def test_probe_failure_reopens_and_target_is_failed(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=3, circuitBreaker={"failureThreshold": 2, "cooldownSeconds": 1})
    operator.start()
    trip(cluster)
    cluster.run("p1", "repo-a")
    wait_for(lambda: cluster.run_status("p1").get("probe") is True, what="probe admitted")
    # The reopened breaker is Open (and the Target Failed) only until its cooldown ends: with 1 s, a loaded machine
    # let it turn HalfOpen before the reads below (the flake of round one). A longer second cooldown keeps the
    # state being asserted in place while it is read.
    cluster.patch(kube.targets("default", "repo-a"),
                  {"spec": {"circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 5}}})
    fail(cluster, "p1")
    status = cluster.target_status("repo-a")
    b = status["breaker"]
    assert (b["state"], b["trips"], b["reopened"], b["consecutiveFailures"]) == ("Open", 2, True, 3)
    assert (status["health"], status["healthReason"]) == ("Failed", "ProbeFailed")
    # The next cooldown lets another probe through; its success closes the breaker and clears Failed.
    cluster.run("p2", "repo-a")
    wait_for(lambda: cluster.run_status("p2").get("probe") is True, what="second probe")
    succeed(cluster, "p2")
    wait_for(lambda: (s := cluster.target_status("repo-a")).get("breaker", {}).get("state") == "Closed" and s)
    assert cluster.target_status("repo-a")["breaker"]["reopened"] is False
    assert_stored_objects_fit_the_crds(cluster)


def test_success_while_closed_resets_the_count(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", circuitBreaker={"failureThreshold": 2, "cooldownSeconds": 1})
    operator.start()
    cluster.run("f1", "repo-a")
    fail(cluster, "f1")
    cluster.run("s1", "repo-a")
    succeed(cluster, "s1")
    assert breaker(cluster)["consecutiveFailures"] == 0
    cluster.run("f2", "repo-a")
    fail(cluster, "f2")
    assert breaker(cluster)["state"] == "Closed" and breaker(cluster)["trips"] == 0


def test_the_slot_freed_by_a_tripping_failure_is_never_used_before_the_breaker_counts_it(
        cluster: Cluster, operator: Operator) -> None:
    """The demo's race: the failed Job frees the concurrency slot before its Run shows Failed.

    Reading the pods of a finished Job (for its termination message) is made slow, so the Run's Failed status
    arrives about a second after the Job's; meanwhile a new Run wakes the Target. The waiting Runs must stay
    held until the failure is counted and the breaker opens.
    """
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=1, circuitBreaker={"failureThreshold": 2, "cooldownSeconds": 300})
    operator.start()
    cluster.run("f1", "repo-a")
    fail(cluster, "f1")
    cluster.run("f2", "repo-a")
    wait_for(lambda: admitted(cluster, "f2"), what="f2 admitted")
    cluster.run("q1", "repo-a")
    wait_for(lambda: cluster.run_status("q1").get("reason") == "ConcurrencyLimit", what="q1 held by concurrency")
    cluster.start_job("f2")
    wait_for(lambda: cluster.run_status("f2").get("phase") == "Running", what="f2 running")
    cluster.delays["pods"] = 1.0
    cluster.finish_job("f2", ok=False)
    cluster.run("q2", "repo-a")  # wakes the Target while f2's Run still shows Running
    wait_for(lambda: breaker(cluster).get("state") == "Open", what="breaker open")
    cluster.delays.clear()
    wait_for(lambda: cluster.run_status("q2").get("reason") == "CircuitOpen", what="q2 held by the breaker")
    for run in ("q1", "q2"):
        assert not admitted(cluster, run), f"{run} was admitted with the slot of the failure that trips the breaker"
        assert "admittedAt" not in cluster.run_status(run)
    assert breaker(cluster)["consecutiveFailures"] == 2
    pod_labels = cluster.job("q1")["spec"]["template"]["metadata"]["labels"]  # what the NetworkPolicy admits
    assert (pod_labels["outrider.dev/run"], pod_labels["outrider.dev/target"]) == ("q1", "repo-a")
