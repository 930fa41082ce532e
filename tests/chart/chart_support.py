"""Shared helpers for the chart tests: render the chart offline with helm-python-sdk (Helm's own library,
no cluster) and validate what comes out, as `helm template | kubeconform --strict` would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "outrider"
RELEASE = "outrider"
NAMESPACE = "outrider"
#: The Kubernetes version the rendered objects are validated against (the newest kubernetes-validate knows).
KUBE_VERSION = kubernetes_validate.latest_version()
#: Kinds kubernetes-validate has no schema for, because they are not built in: prometheus-operator's
#: ServiceMonitor and PrometheusRule (their CRDs are not in this repository; the tests check their content
#: against the sources instead), and kopf's peering objects (validated against the chart's own peering CRD).
NOT_BUILT_IN = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}


def render_manifests_module() -> ModuleType:
    """scripts/render_manifests.py, imported (it is a script, not part of the package)."""
    name = "outrider_render_manifests"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "render_manifests.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """The chart rendered with ``values`` as {template path: text}."""
    return render_manifests_module().render_chart(values, name=name, namespace=namespace)


def objects(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Every object the chart renders with ``values``."""
    return render_manifests_module().objects_of(render(values, **kwargs))


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def validate_all(objs: list[dict[str, Any]]) -> list[str]:
    """Validate every object; returns the kinds skipped (never silently: the caller asserts on them)."""
    skipped = []
    crds = {o["spec"]["names"]["kind"]: o for o in objs if o["kind"] == "CustomResourceDefinition"}
    for obj in objs:
        if obj["kind"] in NOT_BUILT_IN:
            crd = crds.get(obj["kind"])
            if crd is not None:
                schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                jsonschema.validate(obj, schema)
            else:
                skipped.append(obj["kind"])
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    return skipped


def values_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment)["env"]}
