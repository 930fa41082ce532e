"""Generates docs/reference/crds.md from the CRDs in manifests/crds, so the reference cannot drift.

``python -m outrider.operator.crddocs`` rewrites the text between the BEGIN/END GENERATED markers;
``tests/operator/test_operator_crd_docs.py`` fails when the file is not current. The CRD YAML stays the single
source of truth (a development tool: it reads the repository's manifests/, not the installed package).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from outrider.common import k8s

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reference" / "crds.md"
BEGIN = "<!-- BEGIN GENERATED: python -m outrider.operator.crddocs -->"
END = "<!-- END GENERATED -->"
HEADER = """# CRD reference

The two custom resources of Outrider (group `outrider.dev`, version `v1alpha1`, namespaced), generated from
`manifests/crds/`. Behaviour: docs/concepts/admission.md, breaker.md, health.md.

"""


def _rules(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (("minimum", "≥"), ("maximum", "≤")):
        if key in node:
            parts.append(f"{label} {node[key]}")
    for key, label in (("minLength", "min length"), ("maxLength", "max length")):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if node.get("x-kubernetes-preserve-unknown-fields"):
        parts.append("unknown fields kept")
    return "; ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fields(node: dict[str, Any], path: str, required: set[str], rows: list[str]) -> None:
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        kind = sub.get("type", "")
        if kind == "array":
            kind = f"array of {sub.get('items', {}).get('type', '?')}"
        if sub.get("format"):
            kind += f" ({sub['format']})"
        default = f"`{sub['default']}`" if "default" in sub and sub["default"] != {} else ""
        rows.append(f"| `{here}` | {kind} | {'yes' if name in required else ''} | {default} | "
                    f"{_cell(_rules(sub))} | {_cell(sub.get('description', ''))} |")
        if sub.get("type") == "object":
            _fields(sub, here, set(sub.get("required") or []), rows)
        if sub.get("type") == "array" and (sub.get("items") or {}).get("type") == "object":
            _fields(sub["items"], here + "[]", set(sub["items"].get("required") or []), rows)


def generated() -> str:
    out: list[str] = []
    for kind, relative in k8s.CRD_FILES.items():
        crd = yaml.safe_load((ROOT / relative).read_text(encoding="utf-8"))
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        out += [f"## {kind}", "", f"`{crd['metadata']['name']}` — {schema.get('description', '')} "
                f"Short names: {', '.join(f'`{s}`' for s in names.get('shortNames', []))}; file `{relative}`.", ""]
        out += ["`kubectl get` columns (priority 1 with `-o wide`):", "", "| Column | JSONPath | Type | Wide only |",
                "|---|---|---|---|"]
        for column in version["additionalPrinterColumns"]:
            out.append(f"| {column['name'].upper()} | `{column['jsonPath']}` | {column['type']} | "
                       f"{'yes' if column.get('priority', 0) else ''} |")
        rules = [r for r in schema.get("x-kubernetes-validations", [])]
        rules += [r for r in schema["properties"]["spec"].get("x-kubernetes-validations", [])]
        if rules:
            out += ["", "CEL rules (enforced by the API server): " + "; ".join(
                f"`{r['rule']}` — {r['message']}" for r in rules)]
        for part in ("spec", "status"):
            rows: list[str] = []
            sub = schema["properties"][part]
            _fields(sub, part, set(sub.get("required") or []), rows)
            out += ["", f"### {kind} {part}", "", "| Field | Type | Required | Default | Validation | Description |",
                    "|---|---|---|---|---|---|", *rows]
        out.append("")
    return "\n".join(out)


def render(text: str) -> str:
    """``text`` with its generated section replaced (markers added after the header when missing)."""
    block = f"{BEGIN}\n{generated()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return (text or HEADER) + block + "\n"


def main() -> int:
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(current), encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
