"""The operator's RBAC is exactly what it uses: no wildcard anywhere, and the same rules as
docs/concepts/rbac.md lists. A change to the operator's needs is a deliberate change here too."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart import chart_support as support

#: (apiGroup, resource) -> verbs, cluster-wide.
CLUSTER_RULES = {
    ("outrider.dev", "runs"): {"get", "list", "watch", "create", "patch", "update"},
    ("outrider.dev", "targets"): {"get", "list", "watch", "create", "patch", "update"},
    ("outrider.dev", "runs/status"): {"get", "patch", "update"},
    ("outrider.dev", "targets/status"): {"get", "patch", "update"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "delete"},
    ("batch", "cronjobs"): {"list", "watch", "patch"},
    ("", "pods"): {"get", "list"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}
PEERING_RULE = {("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"}}
#: In the release namespace: the autonomy ConfigMap. (apiGroup, resource, resourceNames) -> verbs.
NAMESPACED_RULES = {
    ("", "configmaps", ()): {"get", "list", "watch"},
    ("", "configmaps", ("outrider-autonomy",)): {"patch"},
}


def flatten(rules: list[dict[str, Any]], *, with_names: bool = False) -> dict[tuple, set[str]]:
    flat: dict[tuple, set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key: tuple = (group, resource, tuple(rule.get("resourceNames", ()))) if with_names else (group, resource)
                flat.setdefault(key, set()).update(rule["verbs"])
    return flat


def rbac_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [o for o in support.objects(values) if o["kind"] in {"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"}]


@pytest.mark.parametrize("values", [{}, {"operator": {"replicas": 2}}, {"operator": {"replicas": 2, "watchNamespace": "agents"}}])
def test_no_wildcards(values: dict[str, Any]) -> None:
    for obj in rbac_objects(values):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), f"{obj['kind']} {obj['metadata']['name']}: wildcard in {field}"
            assert "nonResourceURLs" not in rule


def test_cluster_role_is_exactly_the_listed_rules() -> None:
    role = support.one(rbac_objects(), "ClusterRole", "outrider-operator")
    assert flatten(role["rules"]) == CLUSTER_RULES


def test_namespaced_role_is_exactly_the_autonomy_configmap() -> None:
    role = support.one(rbac_objects(), "Role", "outrider-operator")
    assert role["metadata"]["namespace"] == "outrider"
    assert flatten(role["rules"], with_names=True) == NAMESPACED_RULES


def test_peering_rules_appear_only_with_two_replicas() -> None:
    role = support.one(rbac_objects({"operator": {"replicas": 2}}), "ClusterRole", "outrider-operator")
    assert flatten(role["rules"]) == CLUSTER_RULES | PEERING_RULE
    namespaced = rbac_objects({"operator": {"replicas": 2, "watchNamespace": "agents"}})
    assert flatten(support.one(namespaced, "ClusterRole", "outrider-operator")["rules"]) == CLUSTER_RULES
    peering = support.one(namespaced, "Role", "outrider-operator-peering")
    assert peering["metadata"]["namespace"] == "agents"
    assert flatten(peering["rules"]) == {("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"}}


def test_bindings_give_the_roles_to_the_operator_only() -> None:
    objs = rbac_objects({"operator": {"replicas": 2, "watchNamespace": "agents"}})
    bindings = [o for o in objs if o["kind"].endswith("Binding")]
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "outrider-operator", "namespace": "outrider"}]
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]
    objs = support.objects()
    assert support.one(objs, "ServiceAccount", "outrider-control-plane")["automountServiceAccountToken"] is False
    cp = support.one(objs, "Deployment", "outrider-control-plane")["spec"]["template"]["spec"]
    assert cp["automountServiceAccountToken"] is False
