"""`make lint` enforces the layers (import-linter, contracts in pyproject.toml): the real tree keeps every contract,
and a throwaway copy of it with one deliberately wrong import breaks the contract that forbids it."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint(tree: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the ``outrider`` package in ``tree``, with the project's own contracts."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    tree = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "outrider", tree / "outrider", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_every_contract(throwaway: pathlib.Path) -> None:
    result = lint(throwaway)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "wrong_import", "contract"), [
    ("outrider/operator/breaker.py", "from outrider.operator import kube", "the operator's rules do no I/O"),
    ("outrider/operator/kube.py", "from outrider.operator import reconciler", "operator layers"),
    ("outrider/operator/reconciler.py", "from outrider.operator import run_flows", "operator layers"),
    ("outrider/operator/run_flows.py", "import kopf", "only the wiring knows kopf"),
    ("outrider/control_plane/store/projector.py", "import fastapi", "the store and the services know nothing of the web layer"),
    ("outrider/control_plane/routes/runs.py", "import sqlalchemy", "never touch the database"),
    ("outrider/control_plane/model_metrics.py", "from sqlalchemy import select", "never touch the database"),
    ("outrider/operator/admission.py", "from outrider.control_plane import store", "independent of each other"),
    ("outrider/common/timefmt.py", "from outrider.operator import model", "common depends on nothing else"),
])
def test_a_deliberately_wrong_import_breaks_its_contract(throwaway: pathlib.Path, module: str, wrong_import: str,
                                                         contract: str) -> None:
    path = throwaway / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{wrong_import}  # deliberately wrong (test_import_layers)\n")
        result = lint(throwaway)
    finally:
        path.write_text(original)
    assert result.returncode != 0, f"{wrong_import} in {module} passed every contract"
    (name,) = [c["name"] for c in CONTRACTS if contract in c["name"]]
    text = " ".join(result.stdout.split())  # import-linter wraps long contract names
    assert f"{name} BROKEN" in text, result.stdout


def test_the_store_starts_its_writer_child_by_name_and_never_imports_it() -> None:
    """The writer child's module imports the store (its appender is the store's own group commit); the server's side
    starts it by module name (``store.remote_writer.CHILD_MODULE``), so nothing imports the child and the store and
    its child form no import cycle. (An import-linter "forbidden" contract cannot say this: the child is inside the
    store package, and imports within a source package are not checked.)"""
    import grimp

    from outrider.control_plane.store import remote_writer

    graph = grimp.build_graph("outrider", cache_dir=None)
    child = remote_writer.CHILD_MODULE
    assert graph.find_modules_that_directly_import(child) == set()
    assert graph.find_shortest_chain(importer=child, imported="outrider.control_plane.store") is not None
