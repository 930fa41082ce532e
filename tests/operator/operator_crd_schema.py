"""Validate and default objects against the CRDs' openAPIV3Schema, the way an API server does (tests only).

KMock does not validate custom resources, so the schema's rules are tested here with ``jsonschema`` plus a
small defaulting pass that mirrors the API server's structural defaulting (a default applies where the field
is absent and its parent object exists). CEL rules (x-kubernetes-validations) are checked by hand in tests.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from outrider.common import k8s

ROOT = Path(__file__).resolve().parents[2]


def load_crd(kind: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / k8s.CRD_FILES[kind]).read_text())


def schema_of(kind: str) -> dict[str, Any]:
    crd = load_crd(kind)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == k8s.VERSION]
    return version["schema"]["openAPIV3Schema"]


def _kube_to_jsonschema(node: Any) -> Any:
    """Drop the x-kubernetes-* keys and make ``properties`` strict where Kubernetes would prune."""
    if isinstance(node, dict):
        out = {key: _kube_to_jsonschema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
        return out
    if isinstance(node, list):
        return [_kube_to_jsonschema(item) for item in node]
    return node


def apply_defaults(obj: Any, schema: dict[str, Any]) -> Any:
    """Fill in defaults like the API server: absent fields with a default, recursively, parents first."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        if isinstance(obj, list) and "items" in schema:
            return [apply_defaults(item, schema["items"]) for item in obj]
        return obj
    result = dict(obj)
    for name, sub in (schema.get("properties") or {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(result[name], sub)
    return result


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune (not declared, no x-kubernetes-preserve-unknown-fields)."""
    found: list[str] = []
    if isinstance(obj, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return found
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif props is None and path.endswith("metadata"):
                continue
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and not (path == "" and key == "metadata"):
                found.append(f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for index, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


def validate(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as stored after defaulting; raises jsonschema.ValidationError when the API server would refuse it."""
    schema = schema_of(kind)
    defaulted = apply_defaults(obj, schema)
    jsonschema.Draft7Validator(_kube_to_jsonschema(schema), format_checker=jsonschema.FormatChecker()).validate(defaulted)
    return defaulted
