"""Kubernetes Events through the operator's recorder (kube_events.py): pacing, merging, the bounded queue.

The token bucket and the recorder's queue are driven with an injected clock (no sleeps); posting goes through the
operator's real kube.Client to KMock, and one test reads the Events an operator posted for a Run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from operator_harness import Cluster, Operator, wait_for

from outrider.common import k8s
from outrider.operator import kube, kube_events, reconciler

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_ref(name: str, uid: str | None = None) -> dict[str, Any]:
    return reconciler.ref(k8s.RUN_KIND, "default", name, uid or f"uid-{name}")


def recorder(clock: Clock, client: kube.Client | None = None, **kwargs: Any) -> kube_events.Recorder:
    return kube_events.Recorder(client, clock=clock, wall=lambda: T0 + dt.timedelta(seconds=clock.now), **kwargs)


def test_token_bucket_gives_a_burst_then_the_steady_rate() -> None:
    clock = Clock()
    bucket = kube_events.TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay() == 0.5
    clock.now += 0.25
    assert not bucket.take()
    assert bucket.delay() == 0.25
    clock.now += 0.25
    assert bucket.take() and not bucket.take()
    clock.now += 60  # idle: refills up to the burst, never beyond
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_duplicate_of_the_last_queued_event_is_merged_into_it() -> None:
    clock = Clock()
    rec = recorder(clock)
    rec.info(run_ref("a"), reason="Pending", message="waiting")
    clock.now += 5
    rec.info(run_ref("a"), reason="Pending", message="waiting")
    rec.info(run_ref("a"), reason="Pending", message="waiting")
    rec.info(run_ref("b"), reason="Pending", message="waiting")  # another object: its own Event
    assert rec.queued == 2 and rec.merged == 2
    event = rec.take_ready()
    assert event is not None
    body = kube_events.body_for(event, default_namespace="default", instance="pod-1")
    assert body["count"] == 3
    assert body["firstTimestamp"] == (T0 + dt.timedelta(seconds=100)).isoformat()
    assert body["lastTimestamp"] == (T0 + dt.timedelta(seconds=105)).isoformat()


def test_a_change_and_its_reversal_are_all_posted_in_order() -> None:
    clock = Clock()
    rec = recorder(clock)
    target = reconciler.ref(k8s.TARGET_KIND, "default", "repo-a", "uid-t")
    for reason in ("Ready", "Degraded", "Ready"):
        rec.info(target, reason=reason, message=reason)
    taken = [rec.take_ready() for _ in range(3)]
    assert [e.reason for e in taken if e is not None] == ["Ready", "Degraded", "Ready"]
    assert rec.merged == 0


def test_a_duplicate_of_the_last_posted_event_is_not_posted_again_within_the_window() -> None:
    clock = Clock()
    rec = recorder(clock, dedup_seconds=60)
    rec.warn(run_ref("a"), reason="JobDeleted", message="gone")
    assert rec.take_ready() is not None
    clock.now += 30
    rec.warn(run_ref("a"), reason="JobDeleted", message="gone")
    assert rec.queued == 0 and rec.merged == 1
    rec.warn(run_ref("a"), reason="JobDeleted", message="gone again")  # another message: posted
    assert rec.queued == 1
    assert rec.take_ready() is not None
    clock.now += 61
    rec.warn(run_ref("a"), reason="JobDeleted", message="gone again")  # the window has passed
    assert rec.queued == 1


def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    clock = Clock()
    rec = recorder(clock, queue_max=3)
    for i in range(5):
        rec.info(run_ref(f"r{i}"), reason="JobCreated", message=f"Job r{i} created")
    assert rec.queued == 3 and rec.dropped == 2
    assert [e.ref["name"] for e in (rec.take_ready(), rec.take_ready(), rec.take_ready()) if e] == ["r2", "r3", "r4"]


def test_the_recorder_waits_for_tokens_instead_of_posting_the_burst_at_once() -> None:
    clock = Clock()
    rec = recorder(clock, burst=2, qps=1.0)
    for i in range(4):
        rec.info(run_ref(f"r{i}"), reason="JobCreated", message="created")
    assert rec.take_ready() is not None and rec.take_ready() is not None
    assert rec.take_ready() is None and rec.bucket.delay() == 1.0
    clock.now += 1
    assert rec.take_ready() is not None and rec.take_ready() is None


def test_the_body_is_the_one_kopf_posts() -> None:
    clock = Clock()
    rec = recorder(clock)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "ns-1", "name": "j", "uid": "u"}}
    rec.warn(job, reason="Drained", message="x" * 2000)
    event = rec.take_ready()
    assert event is not None
    body = kube_events.body_for(event, default_namespace="default", instance="pod-1")
    assert body["metadata"] == {"namespace": "ns-1", "generateName": "kopf-event-"}
    assert body["involvedObject"] == {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u",
                                      "namespace": "ns-1"}
    assert (body["type"], body["reason"], body["source"], body["reportingComponent"], body["reportingInstance"]) == (
        "Warning", "Drained", {"component": "kopf"}, "kopf", "pod-1")
    assert len(body["message"]) == 1024 and "..." in body["message"]
    assert body["eventTime"] == body["firstTimestamp"] == body["lastTimestamp"]
    rec.info({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}, reason="x")  # never about Events
    assert rec.queued == 0


def test_a_burst_beyond_the_bound_posts_the_newest_to_the_api_server(cluster: Cluster) -> None:
    async def main() -> kube_events.Recorder:
        client = kube.Client(kube.Config(server=cluster.url))
        rec = kube_events.Recorder(client, queue_max=20, burst=5, qps=1000.0)
        try:
            for i in range(30):
                rec.info(run_ref(f"burst-{i}"), reason="JobCreated", message=f"Job burst-{i} created")
            rec.info(run_ref("burst-29"), reason="JobCreated", message="Job burst-29 created")  # merged
            rec.start()
            for _ in range(500):
                if rec.posted == 20:
                    break
                await asyncio.sleep(0.01)
        finally:
            await rec.stop()
            await client.close()
        return rec

    rec = asyncio.run(main())
    assert (rec.posted, rec.dropped, rec.merged, rec.failed) == (20, 10, 1, 0)
    items = (cluster.get("/api/v1/namespaces/default/events") or {}).get("items") or []
    names = {e["involvedObject"]["name"]: e for e in items}
    assert set(names) == {f"burst-{i}" for i in range(10, 30)}
    assert names["burst-29"]["count"] == 2 and names["burst-10"]["count"] == 1


def test_the_operator_posts_a_runs_events_through_the_recorder(cluster: Cluster, operator: Operator) -> None:
    cluster.autonomy(enabled="true")
    cluster.target("repo-a")
    operator.start()
    cluster.run("ok", "repo-a")
    wait_for(lambda: (cluster.run_status("ok") or {}).get("phase") == k8s.PHASE_ADMITTED, what="admission")
    cluster.job_status("ok", {"active": 1, "startTime": "2026-01-01T10:00:00Z"})
    cluster.job_status("ok", {"active": 0, "succeeded": 1, "completionTime": "2026-01-01T10:01:30Z", "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T10:01:30Z"}]})
    wanted = {"JobCreated", "Admitted", "Started", "Completed"}
    wait_for(lambda: wanted <= {e["reason"] for e in cluster.events_about("ok")}, what="the Run's Events")
    events = cluster.events_about("ok")
    assert sorted(e["reason"] for e in events) == sorted(wanted)  # each once
    for event in events:
        assert event["involvedObject"]["kind"] == k8s.RUN_KIND and event["source"] == {"component": "kopf"}
        assert event["count"] == 1 and event["type"] == "Normal"
    text = httpx.get(operator.metrics_url).text
    assert "outrider_operator_kube_events_dropped_total 0.0" in text
