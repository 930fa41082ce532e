"""values.yaml and values.schema.json agree key for key, every object in the schema refuses unknown keys,
and every value in values.yaml carries a `# --` comment (docs/reference/helm-values.md is built from them)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.chart import chart_support as support


def schema() -> dict[str, Any]:
    return json.loads((support.CHART / "values.schema.json").read_text())


def containers_and_leaves(node: dict[str, Any], path: str = "") -> tuple[dict[str, dict], dict[str, dict]]:
    """Schema objects with declared properties are containers; everything else is a leaf (a value)."""
    containers: dict[str, dict] = {}
    leaves: dict[str, dict] = {}
    if "properties" in node:
        containers[path] = node
        for key, child in node["properties"].items():
            sub_containers, sub_leaves = containers_and_leaves(child, f"{path}.{key}" if path else key)
            containers.update(sub_containers)
            leaves.update(sub_leaves)
    else:
        leaves[path] = node
    return containers, leaves


def value_paths(values: dict[str, Any], containers: dict[str, dict], path: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        child = f"{path}.{key}" if path else key
        paths.add(child)
        if child in containers:
            assert isinstance(value, dict), f"{child}: the schema says object"
            paths |= value_paths(value, containers, child)
    return paths


def test_schema_and_values_have_the_same_keys() -> None:
    containers, leaves = containers_and_leaves(schema())
    in_values = value_paths(support.values_yaml(), containers)
    in_schema = (set(containers) - {""}) | set(leaves)
    assert in_values - in_schema == set(), "in values.yaml but not in the schema"
    assert in_schema - in_values == set(), "in the schema but not in values.yaml"


def test_every_schema_object_refuses_unknown_keys() -> None:
    containers, _ = containers_and_leaves(schema())
    for path, node in containers.items():
        assert node.get("additionalProperties") is False, f"{path or '(root)'} must set additionalProperties: false"


def test_defaults_pass_the_schema() -> None:
    import helm_python

    with helm_python.Chart.load(support.CHART) as chart:
        chart.validate_schema(support.values_yaml())


KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):")


def documented_paths() -> dict[str, bool]:
    """Every key path in values.yaml -> whether a `# --` comment block sits directly above it."""
    result: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in (support.CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        match = KEY.match(line)
        if not match:
            if not stripped:
                comments = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        result[path] = any(c.startswith("# --") for c in comments)
        stack.append((indent, match["key"]))
        comments = []
    return result


def test_every_value_has_a_doc_comment() -> None:
    _, leaves = containers_and_leaves(schema())
    documented = documented_paths()
    missing = [path for path in leaves if not documented.get(path)]
    assert missing == [], f"values without a `# --` comment: {missing}"
