"""The operator's RBAC is exactly what it uses: no wildcard anywhere, and the same rules as
docs/concepts/rbac.md lists (checked against the doc's table too). A change to the operator's needs is a
deliberate change here too."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart import chart_support as support

#: (apiGroup, resource) -> verbs: the operator's rules, exactly as docs/concepts/rbac.md lists them.
OPERATOR_RULES = {
    ("outrider.dev", "runs"): {"get", "list", "watch", "create"},
    ("outrider.dev", "targets"): {"list", "watch", "patch"},
    ("outrider.dev", "runs/status"): {"patch"},
    ("outrider.dev", "targets/status"): {"patch"},
    ("batch", "jobs"): {"list", "watch", "create", "patch"},
    ("batch", "cronjobs"): {"list", "watch", "patch"},
    ("", "pods"): {"list"},
    ("", "events"): {"create"},
    ("", "secrets"): {"create"},  # each admitted Run's credential (runCredentials.enabled); create only
}
PEERING_VERBS = {"get", "list", "watch", "patch"}
#: In the release namespace: the autonomy ConfigMap, by name. (apiGroup, resource, resourceNames) -> verbs.
AUTONOMY_RULES = {("", "configmaps", ("outrider-autonomy",)): {"get", "watch"}}


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
    objs = rbac_objects()
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ClusterRole", "outrider-operator"), ("ClusterRoleBinding", "outrider-operator"),
        ("Role", "outrider-operator-autonomy"), ("RoleBinding", "outrider-operator-autonomy")]
    assert flatten(support.one(objs, "ClusterRole", "outrider-operator")["rules"]) == OPERATOR_RULES


def test_autonomy_role_is_exactly_the_configmap_by_name() -> None:
    role = support.one(rbac_objects(), "Role", "outrider-operator-autonomy")
    assert role["metadata"]["namespace"] == "outrider"
    assert flatten(role["rules"], with_names=True) == AUTONOMY_RULES
    # The name follows the release, as the operator's OUTRIDER_AUTONOMY_CONFIGMAP does.
    role = support.one(support.objects(name="prod"), "Role", "prod-outrider-operator-autonomy")
    assert flatten(role["rules"], with_names=True) == {("", "configmaps", ("prod-outrider-autonomy",)): {"get", "watch"}}


def test_rbac_doc_lists_the_same_rules() -> None:
    doc = (support.ROOT / "docs" / "concepts" / "rbac.md").read_text()
    for (group, resource), verbs in OPERATOR_RULES.items():
        row = next((line for line in doc.splitlines()
                    if line.startswith(f"| `{group}`" if group else '| `""`') and f"| `{resource}` |" in line), None)
        assert row is not None, f"docs/concepts/rbac.md has no row for {group}/{resource}"
        documented = set(re.findall(r"`([a-z]+)`", row.split("|")[3]))
        assert documented == verbs, f"{group}/{resource}: doc says {documented}, chart has {verbs}"


def test_peering_rules_appear_only_with_two_replicas() -> None:
    role = support.one(rbac_objects({"operator": {"replicas": 2}}), "ClusterRole", "outrider-operator")
    assert flatten(role["rules"]) == OPERATOR_RULES | {("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS}


def test_a_namespaced_operator_gets_a_role_not_a_cluster_role() -> None:
    objs = rbac_objects({"operator": {"watchNamespace": "agents"}})
    assert support.find(objs, "ClusterRole") == [] and support.find(objs, "ClusterRoleBinding") == []
    role = support.one(objs, "Role", "outrider-operator")
    assert role["metadata"]["namespace"] == "agents"
    assert flatten(role["rules"]) == OPERATOR_RULES
    peering = support.one(rbac_objects({"operator": {"replicas": 2, "watchNamespace": "agents"}}), "Role", "outrider-operator")
    assert flatten(peering["rules"]) == OPERATOR_RULES | {("kopf.dev", "kopfpeerings"): PEERING_VERBS}


def test_bindings_give_the_roles_to_the_operator_only() -> None:
    for values in ({}, {"operator": {"replicas": 2, "watchNamespace": "agents"}}):
        bindings = [o for o in rbac_objects(values) if o["kind"].endswith("Binding")]
        assert len(bindings) == 2
        for binding in bindings:
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "outrider-operator", "namespace": "outrider"}]
            assert binding["roleRef"]["name"] == binding["metadata"]["name"]
    objs = support.objects()
    assert support.one(objs, "ServiceAccount", "outrider-control-plane")["automountServiceAccountToken"] is False
    cp = support.one(objs, "Deployment", "outrider-control-plane")["spec"]["template"]["spec"]
    assert cp["automountServiceAccountToken"] is False
