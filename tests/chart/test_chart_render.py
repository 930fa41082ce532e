"""The chart lints clean and renders valid objects for every documented combination of values: SQLite
(default), PostgreSQL (URL inline or from an existing Secret), monitoring on and off, two operator replicas
(peering), NetworkPolicy on, CRDs off, an existing API-token Secret."""

from __future__ import annotations

import base64
import json
import tomllib

import helm_python
import pytest
import yaml

from tests.chart import chart_support as support

CP = "outrider-control-plane"
OP = "outrider-operator"

COMBINATIONS = {
    "default": {},
    "postgres-url": {"database": {"url": "postgresql+psycopg://outrider:secret@postgres:5432/outrider"}, "controlPlane": {"replicas": 2}},
    "postgres-existing-secret": {"database": {"existingSecret": "outrider-db", "existingSecretKey": "dsn"}, "controlPlane": {"replicas": 3}},
    "monitoring-on": {"monitoring": {"enabled": True, "serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}}}, "grafana": {"dashboards": {"enabled": True}}},
    "monitoring-on-no-rules": {"monitoring": {"enabled": True, "prometheusRule": {"enabled": False}}},
    "operator-replicas-2": {"operator": {"replicas": 2}},
    "operator-replicas-2-namespaced": {"operator": {"replicas": 2, "watchNamespace": "agents"}},
    "network-policy": {"networkPolicy": {"enabled": True}},
    "run-credentials-off": {"runCredentials": {"enabled": False}},
    "crds-off": {"crds": {"enabled": False}},
    "crds-not-kept": {"crds": {"keep": False}},
    "existing-token-secret": {"apiToken": {"existingSecret": "my-token", "secretKey": "bearer"},
                              "operatorToken": {"existingSecret": "my-operator-token"},
                              "runCredentials": {"existingSecret": "my-signing-key"}},
    "autonomy-drained": {"autonomy": {"enabled": False, "mode": "drain", "reason": "incident 42"}},
    "other-release-name": {"__release__": "prod"},
    "kind": {"image": {"repository": "outrider", "tag": "dev", "pullPolicy": "Never"}, "controlPlane": {"persistence": {"size": "256Mi", "storageClassName": "standard"}}},
}


def render_combination(name: str) -> list[dict]:
    values = dict(COMBINATIONS[name])
    release = values.pop("__release__", support.RELEASE)
    return support.objects(values, name=release)


def test_lint_is_clean() -> None:
    report = helm_python.lint(support.CHART, strict=True)
    assert report["errors"] == []
    # Severity 1 is informational (only "icon is recommended": the project has no hosted icon).
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_lint_each_combination(combination: str) -> None:
    values = {k: v for k, v in COMBINATIONS[combination].items() if not k.startswith("__")}
    report = helm_python.lint(support.CHART, values, strict=True)
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_rendered_object_is_valid(combination: str) -> None:
    objs = render_combination(combination)
    assert objs, "nothing rendered"
    skipped = support.validate_all(objs)
    # Only prometheus-operator's kinds may go unvalidated (no schema here); the tests below check their content.
    assert set(skipped) <= {"ServiceMonitor", "PrometheusRule"}
    names = [(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objs]
    assert len(names) == len(set(names)), "two objects with the same kind and name"
    for obj in objs:
        assert len(obj["metadata"]["name"]) <= 63


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((support.CHART / "Chart.yaml").read_text())
    project = tomllib.loads((support.ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_default_install_is_sqlite_on_a_volume() -> None:
    objs = support.objects()
    deployment = support.one(objs, "Deployment", CP)
    env = support.env_of(deployment)
    assert env["OUTRIDER_DATABASE_URL"]["value"] == "sqlite:////data/outrider.db"
    assert env["OUTRIDER_API_TOKENS"]["valueFrom"]["secretKeyRef"] == {"name": "outrider-api-token", "key": "token"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pvc = support.one(objs, "PersistentVolumeClaim", "outrider-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "outrider-data"
    mounts = {m["name"]: m["mountPath"] for m in support.container(deployment)["volumeMounts"]}
    assert mounts == {"data": "/data", "tmp": "/tmp", "run-signing-key": "/etc/outrider/run-signing"}
    service = support.one(objs, "Service", CP)
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert support.find(objs, "ServiceMonitor") == [] and support.find(objs, "PrometheusRule") == []


def test_probes_ports_and_commands() -> None:
    objs = support.objects()
    cp = support.container(support.one(objs, "Deployment", CP))
    assert cp["args"] == ["control-plane", "--host", "0.0.0.0", "--port", "8000"]
    assert cp["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert cp["livenessProbe"]["httpGet"] == {"path": "/v1/health", "port": "http"}
    op_deployment = support.one(objs, "Deployment", OP)
    op = support.container(op_deployment)
    assert op["args"][:5] == ["operator", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
    assert "--standalone" in op["args"] and "--peering" not in op["args"]
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert {p["name"]: p["containerPort"] for p in op["ports"]} == {"liveness": 8080, "metrics": 9090}
    env = support.env_of(op_deployment)
    assert env["OUTRIDER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["OUTRIDER_AUTONOMY_CONFIGMAP"]["value"] == "outrider-autonomy"
    assert env["OUTRIDER_URL"]["value"] == "http://outrider-control-plane.outrider.svc:8000"
    assert env["OUTRIDER_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "outrider-operator-token", "key": "token"}
    assert op_deployment["spec"]["strategy"] == {"type": "Recreate"}
    metrics = support.one(objs, "Service", OP)
    assert metrics["spec"]["ports"][0]["name"] == "metrics"


def test_every_pod_is_locked_down() -> None:
    for combination in ("default", "postgres-url", "operator-replicas-2"):
        for deployment in support.find(render_combination(combination), "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
                # The only writable paths are volumes: /tmp everywhere, /data for the SQLite file; the signing key
                # is mounted read-only.
                writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
                assert writable <= {"/tmp", "/data"}


def test_postgres_from_values_goes_through_a_secret() -> None:
    objs = render_combination("postgres-url")
    secret = support.one(objs, "Secret", "outrider-database")
    assert base64.b64decode(secret["data"]["url"]).decode() == COMBINATIONS["postgres-url"]["database"]["url"]
    deployment = support.one(objs, "Deployment", CP)
    assert deployment["spec"]["replicas"] == 2
    assert "strategy" not in deployment["spec"]  # rolling update: PostgreSQL takes several writers
    env = support.env_of(deployment)
    assert env["OUTRIDER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "outrider-database", "key": "url"}
    assert support.find(objs, "PersistentVolumeClaim") == []
    assert "data" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_postgres_from_an_existing_secret() -> None:
    objs = render_combination("postgres-existing-secret")
    assert support.find(objs, "Secret", "outrider-database") == []
    env = support.env_of(support.one(objs, "Deployment", CP))
    assert env["OUTRIDER_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "outrider-db", "key": "dsn"}


def test_sqlite_with_more_than_one_replica_is_refused() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="url|existingSecret|database"):
        support.render({"controlPlane": {"replicas": 2}})
    # With PostgreSQL the same replica count is fine.
    support.render({"controlPlane": {"replicas": 2}, "database": {"url": "postgresql+psycopg://h/db"}})


def test_unknown_and_wrongly_typed_values_are_refused() -> None:
    for bad in ({"controlPlane": {"replica": 2}}, {"surprise": True}, {"autonomy": {"mode": "stop"}},
                {"operator": {"replicas": "two"}}, {"image": {"pullPolicy": "Sometimes"}}):
        with pytest.raises(helm_python.HelmValuesError):
            support.render(bad)


def test_generated_token_is_kept_across_upgrades_with_lookup() -> None:
    template = (support.CHART / "templates" / "control-plane" / "token-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template
    secret = support.one(support.objects(), "Secret", "outrider-api-token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    # Offline there is nothing to look up, so each render generates a fresh token; the pods must not roll
    # because of that: the checksum does not include the token.
    first, second = support.objects(), support.objects()
    assert support.one(first, "Secret", "outrider-api-token") != support.one(second, "Secret", "outrider-api-token")
    assert checksum(first, CP) == checksum(second, CP)


def test_existing_token_secret_is_used_and_none_is_created() -> None:
    objs = render_combination("existing-token-secret")
    assert support.find(objs, "Secret") == []
    ref = {"name": "my-token", "key": "bearer"}
    operator_ref = {"name": "my-operator-token", "key": "token"}
    cp_env = support.env_of(support.one(objs, "Deployment", CP))
    assert cp_env["OUTRIDER_API_TOKENS"]["valueFrom"]["secretKeyRef"] == ref
    assert cp_env["OUTRIDER_OPERATOR_TOKENS"]["valueFrom"]["secretKeyRef"] == operator_ref
    assert support.env_of(support.one(objs, "Deployment", OP))["OUTRIDER_TOKEN"]["valueFrom"]["secretKeyRef"] == operator_ref


def test_each_component_gets_only_its_own_credentials() -> None:
    """The admin token reaches the control plane only; the operator holds its own token and the signing key; no
    Job or worker gets either (workers get per-run credentials from the operator)."""
    objs = support.objects()
    cp, op = support.one(objs, "Deployment", CP), support.one(objs, "Deployment", OP)
    op_secrets = {v["valueFrom"]["secretKeyRef"]["name"] for v in support.env_of(op).values() if "valueFrom" in v and "secretKeyRef" in v["valueFrom"]}
    assert op_secrets == {"outrider-operator-token"}
    assert support.env_of(op)["OUTRIDER_RUN_SIGNING_KEY_FILE"]["value"] == "/etc/outrider/run-signing/key"
    assert support.env_of(cp)["OUTRIDER_RUN_SIGNING_KEYS_FILE"]["value"] == "/etc/outrider/run-signing/key"
    for deployment in (cp, op):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["run-signing-key"]["secret"]["secretName"] == "outrider-run-signing-key"
    key = base64.b64decode(support.one(objs, "Secret", "outrider-run-signing-key")["data"]["key"])
    assert len(key) >= 32
    off = render_combination("run-credentials-off")
    assert support.find(off, "Secret", "outrider-run-signing-key") == []
    assert "OUTRIDER_RUN_SIGNING_KEY_FILE" not in support.env_of(support.one(off, "Deployment", OP))


def checksum(objs: list[dict], name: str) -> str:
    return support.one(objs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_checksum_rolls_pods_when_config_changes() -> None:
    base = support.objects()
    changed = support.objects({"database": {"url": "postgresql+psycopg://h/db"}})
    token = support.objects({"apiToken": {"existingSecret": "other"}})
    for name in (CP, OP):
        assert checksum(base, name) == checksum(support.objects(), name)
        assert checksum(base, name) != checksum(changed, name)
        assert checksum(base, name) != checksum(token, name)


def test_autonomy_configmap_from_values() -> None:
    cm = support.one(support.objects(), "ConfigMap", "outrider-autonomy")
    assert cm["data"] == {"enabled": "true", "mode": "hold", "reason": ""}
    cm = support.one(render_combination("autonomy-drained"), "ConfigMap", "outrider-autonomy")
    assert cm["data"] == {"enabled": "false", "mode": "drain", "reason": "incident 42"}
    template = (support.CHART / "templates" / "autonomy" / "configmap.yaml").read_text()
    assert 'lookup "v1" "ConfigMap"' in template  # a live pause survives `helm upgrade`


def test_two_operator_replicas_use_kopf_peering() -> None:
    objs = render_combination("operator-replicas-2")
    op = support.container(support.one(objs, "Deployment", OP))
    assert op["args"][-2:] == ["--peering", "outrider"] and "--standalone" not in op["args"]
    assert "strategy" not in support.one(objs, "Deployment", OP)["spec"]
    crd = support.one(objs, "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Cluster"
    peering = support.one(objs, "ClusterKopfPeering", "outrider")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    namespaced = render_combination("operator-replicas-2-namespaced")
    assert support.one(namespaced, "KopfPeering", "outrider")["metadata"]["namespace"] == "agents"
    op = support.container(support.one(namespaced, "Deployment", OP))
    assert op["args"][5:] == ["--namespace", "agents", "--peering", "outrider"]


def test_crds_come_from_manifests_and_follow_values() -> None:
    sources = {
        yaml.safe_load(path.read_text())["metadata"]["name"]: yaml.safe_load(path.read_text())
        for path in sorted((support.ROOT / "manifests" / "crds").glob("*.yaml"))
    }
    assert set(sources) == {"runs.outrider.dev", "targets.outrider.dev"}
    kept = {o["metadata"]["name"]: o for o in support.find(support.objects(), "CustomResourceDefinition")}
    plain = {o["metadata"]["name"]: o for o in support.find(render_combination("crds-not-kept"), "CustomResourceDefinition")}
    assert plain == sources  # the chart's copy is the same object
    for name, crd in kept.items():
        assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        assert crd == sources[name]
    assert support.find(render_combination("crds-off"), "CustomResourceDefinition") == []


def test_generated_copies_and_install_yaml_are_current() -> None:
    stale = support.render_manifests_module().stale_files()
    assert stale == [], f"stale generated files (run `make manifests`): {[str(p) for p in stale]}"


def test_install_yaml_is_the_default_render_without_the_token() -> None:
    documents = [d for d in yaml.safe_load_all((support.ROOT / "manifests" / "install.yaml").read_text()) if d]
    assert documents[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "outrider"}}
    assert support.find(documents, "Secret") == []
    rendered = [o for o in support.objects() if o["kind"] != "Secret"]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, documents[1:])) == sorted(map(key, rendered))
    support.validate_all(documents)
    kustomization = yaml.safe_load((support.ROOT / "manifests" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["install.yaml"]


def test_monitoring_objects_only_when_enabled() -> None:
    objs = render_combination("monitoring-on")
    monitors = {o["metadata"]["name"]: o for o in support.find(objs, "ServiceMonitor")}
    assert set(monitors) == {CP, OP}
    assert monitors[CP]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitors[OP]["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        service = support.one(objs, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert service["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]
    rule = support.one(objs, "PrometheusRule")
    source = yaml.safe_load((support.ROOT / "monitoring" / "rules" / "outrider.rules.yaml").read_text())
    assert rule["spec"] == source
    dashboard = support.one(objs, "ConfigMap", "outrider-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = json.loads((support.ROOT / "monitoring" / "dashboards" / "outrider-overview.json").read_text())
    assert json.loads(dashboard["data"]["outrider-overview.json"]) == source
    no_rules = render_combination("monitoring-on-no-rules")
    assert support.find(no_rules, "PrometheusRule") == [] and len(support.find(no_rules, "ServiceMonitor")) == 2


def test_network_policies_deny_by_default_and_admit_by_namespace_and_label() -> None:
    """Both components deny all traffic in and out but what is listed; workers need a labelled namespace AND a
    labelled pod (a pod cannot label its own namespace); the operator reaches only DNS, the API server and the
    control plane."""
    assert support.find(support.objects(), "NetworkPolicy") == []
    objs = render_combination("network-policy")
    policy = support.one(objs, "NetworkPolicy", CP)
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "control-plane"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    peers = rule["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "outrider", "app.kubernetes.io/instance": "outrider", "app.kubernetes.io/component": "operator"}}}
    assert peers[1] == {"namespaceSelector": {"matchLabels": {"outrider.dev/workers": "allowed"}},
                        "podSelector": {"matchExpressions": [{"key": "outrider.dev/run", "operator": "Exists"}]}}
    assert all(peer.get("namespaceSelector") != {} for peer in peers), "no peer may match every namespace"
    assert peers[2]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    (dns,) = policy["spec"]["egress"]  # SQLite: DNS only
    assert {p["port"] for p in dns["ports"]} == {53}
    operator = support.one(objs, "NetworkPolicy", "outrider-operator")
    assert operator["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert operator["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = {p["port"] for rule in operator["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {8000, 53, 443, 6443}
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in support.find(objs, "NetworkPolicy"):
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_names_follow_the_release() -> None:
    objs = render_combination("other-release-name")
    assert support.one(objs, "Deployment", "prod-outrider-control-plane")
    env = support.env_of(support.one(objs, "Deployment", "prod-outrider-operator"))
    assert env["OUTRIDER_URL"]["value"] == "http://prod-outrider-control-plane.outrider.svc:8000"
    assert env["OUTRIDER_AUTONOMY_CONFIGMAP"]["value"] == "prod-outrider-autonomy"


def test_notes_say_the_next_three_things() -> None:
    notes = support.render()["outrider/templates/NOTES.txt"]
    assert "kubectl get targets,runs" in notes
    assert "port-forward svc/outrider-control-plane 8000:8000" in notes
    assert "patch configmap outrider-autonomy" in notes and '"enabled":"false"' in notes


def test_limits_reach_the_control_plane_and_a_scrape_key_reaches_the_service_monitor() -> None:
    env = support.env_of(support.one(support.objects(), "Deployment", CP))
    assert env["OUTRIDER_NAMESPACE_QUOTA_BYTES"]["value"] == "268435456"  # a quarter of the default 1 Gi volume
    assert env["OUTRIDER_KEY_INGEST_BYTES_PER_SECOND"]["value"] == "4194304"
    assert "OUTRIDER_METRICS_REQUIRE_KEY" not in env
    no_quota = support.env_of(support.one(support.objects({"controlPlane": {"limits": {"namespaceQuotaBytes": None}}}), "Deployment", CP))
    assert "OUTRIDER_NAMESPACE_QUOTA_BYTES" not in no_quota
    with pytest.raises(helm_python.HelmValuesError, match="name"):  # a required key needs the Secret holding it
        support.render({"controlPlane": {"metrics": {"requireKey": True}}})
    objs = support.objects({"monitoring": {"enabled": True},
                            "controlPlane": {"metrics": {"requireKey": True, "keySecret": {"name": "prometheus-outrider-key"}}}})
    assert support.env_of(support.one(objs, "Deployment", CP))["OUTRIDER_METRICS_REQUIRE_KEY"]["value"] == "true"
    monitors = {o["metadata"]["name"]: o for o in support.find(objs, "ServiceMonitor")}
    assert monitors[CP]["spec"]["endpoints"][0]["authorization"] == {
        "type": "Bearer", "credentials": {"name": "prometheus-outrider-key", "key": "token"}}
    assert "authorization" not in monitors[OP]["spec"]["endpoints"][0]  # the operator's endpoint stays as it is
