"""The Dockerfile keeps its promises (no Docker engine here, so they are checked statically): two stages, the
final one from the slim Python image with only the wheel installed, a fixed non-root uid that the chart's pods
also run as, `outrider` as the entrypoint, and a .dockerignore that keeps local state out of the build."""

from __future__ import annotations

import json
import re

from tests.chart import chart_support as support


def stages() -> list[list[str]]:
    lines = []
    for raw in re.sub(r"\\\n", " ", (support.ROOT / "Dockerfile").read_text()).splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    result: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_multi_stage_slim_non_root_with_outrider_entrypoint() -> None:
    build, final = stages()
    assert build[0].endswith(" AS build")
    assert "python -m build --wheel" in " ".join(build)
    text = (support.ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert final[0] == "FROM ${PYTHON_IMAGE}"
    body = " ".join(final)
    assert "COPY --from=build /wheels /wheels" in body
    assert '[postgres,otel]' in body and "rm -rf /wheels" in body
    # No compilers or package installs in the final stage.
    assert not re.search(r"apt-get|apk add|gcc|build-essential|pip install[^;]*\bbuild\b", body)
    user = next(line for line in final if line.startswith("USER "))
    assert user == "USER 65532:65532"
    entrypoint = next(line for line in final if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["outrider"]


def test_chart_pods_run_as_the_image_user() -> None:
    for deployment in support.find(support.objects(), "Deployment"):
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (65532, 65532)


def test_dockerignore_keeps_local_state_out() -> None:
    lines = (support.ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "*.db", "outrider.token", "tests"} <= ignored
    assert not {"outrider", "pyproject.toml", "README.md"} & ignored
