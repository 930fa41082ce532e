"""Generates the reference part of docs/events.md from the event models, so the doc cannot drift.

``python -m outrider.control_plane.eventdocs`` rewrites the text between the BEGIN/END GENERATED
markers of docs/events.md; ``tests/control_plane/test_cp_docs.py`` fails when the file is not current.
The models in ``outrider.common.events`` stay the single source of truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from outrider.common import events

BEGIN = "<!-- BEGIN GENERATED: python -m outrider.control_plane.eventdocs -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _schema(model: type) -> str:
    schema = model.model_json_schema()  # type: ignore[attr-defined]
    return "```json\n" + json.dumps(schema, indent=2, sort_keys=True) + "\n```"


def generated() -> str:
    """The generated section: the envelope's schema, then each type with its description and data schema."""
    scopes = []
    for kind in events.EventType:
        if kind.value.startswith(events.RUN_SCOPED_PREFIXES):
            scopes.append("`runid` required")
        elif kind.value.startswith(events.TARGET_SCOPED_PREFIXES):
            scopes.append("`target` required")
        else:
            scopes.append("—")
    lines = ["### Types", "", "| type | needs | meaning |", "|---|---|---|"]
    for kind, scope in zip(events.EventType, scopes, strict=True):
        lines.append(f"| [`{kind.value}`](#{kind.value.replace('.', '')}) | {scope} | {events.DESCRIPTIONS[kind]} |")
    lines += ["", "### Envelope (JSON schema)", "", _schema(events.CloudEvent), ""]
    for kind, scope in zip(events.EventType, scopes, strict=True):
        model = events.DATA_MODELS[kind]
        lines += [f"### {kind.value}", "", events.DESCRIPTIONS[kind], "", f"Scope: {scope}. `data` model: `{model.__name__}`.", ""]
        lines += [_schema(model), ""]
    return "\n".join(lines).rstrip() + "\n"


def render(text: str) -> str:
    """``text`` with its generated section replaced by the current one."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + generated() + text[end:]


def main() -> int:
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
