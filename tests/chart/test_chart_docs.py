"""The install and operations docs point at files that exist, and quote the chart's real object names."""

from __future__ import annotations

import re

import pytest

from tests.chart import chart_support as support

DOCS = [
    "docs/operations/install.md",
    "docs/getting-started/README.md",
    "docs/reference/helm-values.md",
    "docs/operations/runbooks/README.md",
    "charts/outrider/README.md",
    *sorted(str(p.relative_to(support.ROOT)) for p in (support.ROOT / "docs" / "operations" / "runbooks").glob("Outrider*.md")),
]
LINK = re.compile(r"\]\((?!https?://)([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc: str) -> None:
    path = support.ROOT / doc
    for target in LINK.findall(path.read_text()):
        assert (path.parent / target).exists(), f"{doc}: broken link {target}"


def test_install_guide_names_what_the_chart_renders() -> None:
    text = (support.ROOT / "docs" / "operations" / "install.md").read_text()
    names = {(o["kind"], o["metadata"]["name"]) for o in support.objects()}
    for kind, name in [("Deployment", "outrider-operator"), ("Deployment", "outrider-control-plane"),
                       ("PersistentVolumeClaim", "outrider-data"), ("Secret", "outrider-api-token"),
                       ("ConfigMap", "outrider-autonomy")]:
        assert (kind, name) in names
        assert f"`{name}`" in text, f"install.md does not mention {name}"
