"""A Run's phase never moves backwards (Pending < Admitted < Running < terminal), even when the operator's Run
index lags the cluster: status writes are checked against the Run as the API server has it, not the index."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types

import pytest
from operator_harness import Cluster, Operator, now_text, wait_for

from outrider.common import k8s
from outrider.operator import kube, model, reconciler


def external_job(name: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "labels": {"outrider.dev/target": "repo-a"}},
            "spec": {"suspend": False, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}}


@pytest.mark.parametrize(("current", "new", "suspended", "back"), [
    (None, k8s.PHASE_ADMITTED, False, False),
    (k8s.PHASE_PENDING, k8s.PHASE_RUNNING, False, False),
    (k8s.PHASE_RUNNING, k8s.PHASE_ADMITTED, False, True),
    (k8s.PHASE_ADMITTED, k8s.PHASE_PENDING, False, True),
    (k8s.PHASE_RUNNING, k8s.PHASE_PENDING, True, False),  # drained: the Job really was suspended
    (k8s.PHASE_SUCCEEDED, k8s.PHASE_PENDING, True, True),
    (k8s.PHASE_SUCCEEDED, k8s.PHASE_CANCELLED, False, True),
    (k8s.PHASE_FAILED, k8s.PHASE_FAILED, False, False),
    (k8s.PHASE_RUNNING, None, False, False),
])
def test_phase_order(current, new, suspended, back) -> None:
    assert model.phase_moves_back(current, new, job_suspended=suspended) is back


def test_a_running_adopted_run_is_not_set_back_to_admitted_by_a_stale_index(cluster: Cluster, operator: Operator) -> None:
    """Slow Run requests let the Job mirror's ``Running`` land while the daemon still decides from an index
    showing the adopted Run without a phase; its "created unsuspended" write used to set it back to Admitted
    (and nothing later moved it forward again, since the Job did not change)."""
    cluster.autonomy(enabled="true")
    cluster.target("repo-a", maxConcurrentRuns=10)
    operator.start()
    cluster.delays["runs"] = 0.3
    names = [f"team-job-{i}" for i in range(4)]
    for name in names:
        cluster.create(kube.jobs("default"), external_job(name))
        cluster.job_status(name, {"active": 1, "startTime": now_text()})
    wait_for(lambda: cluster.target_status("repo-a").get("activeRuns") == len(names), what="all counted")
    wait_for(lambda: all(cluster.get(kube.runs("default", n)) for n in names), what="all adopted")
    # Quiet: every write the operator was going to make has landed once the Target status says all are active
    # and two more polls show the same phases.
    seen: list[list[str | None]] = []
    wait_for(lambda: seen.append([cluster.run_status(n).get("phase") for n in names]) or
             (len(seen) > 2 and seen[-1] == seen[-2] == seen[-3] and None not in seen[-1]), timeout=15, interval=0.3,
             what="the phases settle")
    assert seen[-1] == ["Running"] * len(names)


# --- the resourceVersion precondition: the first write trusts the caller's view, a 409 reads the Run again -----
def _status_writer(cluster: Cluster) -> types.SimpleNamespace:
    """A stand-in Runtime: patch_run_status uses only its client."""
    return types.SimpleNamespace(client=kube.Client(kube.Config(server=cluster.url)))


def _mark_running(rt: types.SimpleNamespace, seen: model.RunInfo) -> bool:
    """One status write of Running=True (so phase Running) for Run r1 from the view ``seen``; whether it was written."""
    from outrider.operator import conditions

    running = conditions.set_condition(seen.status.get("conditions"), type_=k8s.CONDITION_RUNNING, status=True,
                                       reason="Running", message="the Job runs", now=dt.datetime.now(dt.UTC), generation=1)

    async def write() -> bool:
        try:
            return await reconciler.patch_run_status(rt, "default", "r1", {"conditions": running}, seen=seen)
        finally:
            await rt.client.close()

    return asyncio.run(write())


def test_the_harness_refuses_a_status_write_with_an_outdated_resource_version(cluster: Cluster) -> None:
    """The safety net the phase-order checks rely on, as on a real API server: every write gives the Run a new
    resourceVersion, and a merge patch carrying an older one is answered 409 Conflict and changes nothing."""
    cluster.run("r1", "repo-a")
    old = cluster.run_obj("r1")["metadata"]["resourceVersion"]
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"phase": k8s.PHASE_RUNNING}})
    assert cluster.run_obj("r1")["metadata"]["resourceVersion"] != old
    response = cluster.http.patch(
        kube.runs("default", "r1", "status"),
        content=json.dumps({"metadata": {"resourceVersion": old}, "status": {"phase": k8s.PHASE_ADMITTED}}),
        headers={"Content-Type": "application/merge-patch+json"})
    assert response.status_code == 409
    assert cluster.run_status("r1")["phase"] == k8s.PHASE_RUNNING


def test_a_write_from_a_stale_view_gets_409_then_is_checked_against_the_server(cluster: Cluster) -> None:
    """The caller saw the Run Running at an older version; meanwhile it Succeeded. The write goes out with the
    old version, the server refuses it (409), the Run is read again, and Running is not written over Succeeded."""
    cluster.run("r1", "repo-a")
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"phase": k8s.PHASE_ADMITTED}})
    seen = model.RunInfo.of(cluster.run_obj("r1"))
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"phase": k8s.PHASE_SUCCEEDED}})
    rt = _status_writer(cluster)
    before = cluster.emulator.conflicts

    assert _mark_running(rt, seen) is False
    assert cluster.emulator.conflicts == before + 1
    assert cluster.run_status("r1")["phase"] == k8s.PHASE_SUCCEEDED


def test_a_write_from_a_current_view_is_one_patch_with_its_version(cluster: Cluster) -> None:
    cluster.run("r1", "repo-a")
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"phase": k8s.PHASE_ADMITTED}})
    seen = model.RunInfo.of(cluster.run_obj("r1"))
    rt = _status_writer(cluster)
    before = cluster.emulator.conflicts

    assert _mark_running(rt, seen) is True
    assert cluster.emulator.conflicts == before
    obj = cluster.run_obj("r1")
    assert obj["status"]["phase"] == k8s.PHASE_RUNNING
    assert obj["metadata"]["resourceVersion"] != seen.resource_version


# --- conditions from a stale view: re-applied onto the fresh Run, never replacing what another writer set --------
def test_a_condition_written_from_a_stale_view_does_not_undo_another_writers_condition(cluster: Cluster) -> None:
    """Issue 18's interleaving: the mirror works from an index that still shows ``Admitted=False`` while admission
    has just written ``Admitted=True``. The mirror's list (a merge patch replaces lists whole) used to set Admitted
    back to False; now its write meets a 409, and only the condition it changed (Running) is applied to the Run as
    the server has it."""
    from outrider.operator import conditions

    now = dt.datetime.now(dt.UTC)
    cluster.run("r1", "repo-a")
    held = conditions.set_condition(None, type_=k8s.CONDITION_ADMITTED, status=False, reason="ConcurrencyLimit",
                                    message="held", now=now, generation=1)
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"phase": k8s.PHASE_PENDING, "conditions": held}})
    stale = model.RunInfo.of(cluster.run_obj("r1"))  # the mirror's view: Admitted=False

    admitted = conditions.set_condition(held, type_=k8s.CONDITION_ADMITTED, status=True, reason="Admitted",
                                        message="admitted", now=now, generation=1)
    assert _write(cluster, {"conditions": admitted},
                  model.RunInfo.of(cluster.run_obj("r1")))  # admission, from a current view

    running = conditions.set_condition(stale.status.get("conditions"), type_=k8s.CONDITION_RUNNING, status=True,
                                       reason="Running", message="the Job runs", now=now, generation=1)
    before = cluster.emulator.conflicts
    assert _write(cluster, {"conditions": running}, stale)  # the mirror, from the stale view
    assert cluster.emulator.conflicts == before + 1  # its first try met the newer Run
    found = {c["type"]: (c["status"], c["reason"]) for c in cluster.run_status("r1")["conditions"]}
    assert found == {"Admitted": ("True", "Admitted"), "Running": ("True", "Running")}
    assert cluster.run_status("r1")["phase"] == k8s.PHASE_RUNNING


def test_a_conditions_only_write_from_a_stale_view_is_rebased_too(cluster: Cluster) -> None:
    """No phase in the write (the watchdog's Stalled): still sent with the view's version and rebased on a 409."""
    from outrider.operator import conditions

    now = dt.datetime.now(dt.UTC)
    cluster.run("r1", "repo-a")
    stale = model.RunInfo.of(cluster.run_obj("r1"))
    other = conditions.set_condition(None, type_=k8s.CONDITION_ADMITTED, status=True, reason="Admitted", message="a",
                                     now=now, generation=1)
    cluster.patch(kube.runs("default", "r1", "status"), {"status": {"conditions": other}})
    stalled = conditions.set_condition(stale.status.get("conditions"), type_=k8s.CONDITION_STALLED, status=True,
                                       reason=k8s.REASON_NO_PROGRESS, message="silent", now=now, generation=1)
    assert _write(cluster, {"conditions": stalled}, stale)
    assert {c["type"] for c in cluster.run_status("r1")["conditions"]} == {"Admitted", "Stalled"}


def test_rebase_applies_only_what_the_writer_changed() -> None:
    from outrider.operator import conditions

    base = [{"type": "A", "status": "False"}, {"type": "B", "status": "True"}]
    mine = [{"type": "A", "status": "False"}, {"type": "B", "status": "False"}, {"type": "C", "status": "True"}]
    theirs = [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]
    assert conditions.rebase(base, mine, theirs) == [
        {"type": "A", "status": "True"}, {"type": "B", "status": "False"}, {"type": "C", "status": "True"}]


def _write(cluster: Cluster, status: dict, seen: model.RunInfo) -> bool:
    rt = _status_writer(cluster)

    async def write() -> bool:
        try:
            return await reconciler.patch_run_status(rt, "default", "r1", status, seen=seen)
        finally:
            await rt.client.close()

    return asyncio.run(write())


def test_api_errors_are_typed_by_status() -> None:
    """Callers catch by kind (kube.Conflict, kube.NotFound, ...), never by comparing numbers (issue 18)."""
    assert isinstance(kube.ApiError.of(404, "x"), kube.NotFound)
    assert isinstance(kube.ApiError.of(409, "x"), kube.Conflict)
    assert isinstance(kube.ApiError.of(403, "x"), kube.Forbidden) and isinstance(kube.ApiError.of(401, "x"), kube.Forbidden)
    assert isinstance(kube.ApiError.of(422, "x"), kube.Invalid) and isinstance(kube.ApiError.of(400, "x"), kube.Invalid)
    assert isinstance(kube.ApiError.of(503, "x"), kube.ServerError)
    assert type(kube.ApiError.of(418, "x")) is kube.ApiError
    assert kube.ApiError.of(422, "x").permanent and not kube.ApiError.of(409, "x").permanent
    assert not kube.ApiError.of(429, "x").permanent and not kube.ApiError.of(503, "x").permanent
