"""Keep the import graph honest (DESIGN.md "Dependencies", STYLE.md 3.2).

* service never imports workers or api, nor torch, ray or fastapi;
* compute code in workers imports only the shared contract of service (spec, results, errors);
  only the composition roots (executor, runner, __main__, cli) reach further;
* only workers/executor.py imports ray; api imports neither workers, torch nor ray.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("service.spec", "service.results", "service.errors", "service.teachers")
COMPOSITION_ROOTS = {"executor.py", "runner.py", "__main__.py", "cli.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports statically (absolute names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
            mods.update(f"{node.module}.{alias.name}" for alias in node.names)
    return mods


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(mod: str) -> str:
    return mod.split(".")[0]


@pytest.mark.parametrize("path", _files("service"), ids=lambda p: str(p.relative_to(ROOT)))
def test_service_imports_no_workers_api_or_heavy_frameworks(path: Path) -> None:
    heavy = {"workers", "api", "torch", "ray", "fastapi"}
    bad = {m for m in imported_modules(path) if _top(m) in heavy}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("workers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_worker_code_imports_only_shared_core(path: Path) -> None:
    mods = imported_modules(path)
    assert not {m for m in mods if _top(m) == "api"} or path.name in COMPOSITION_ROOTS
    if path.name in COMPOSITION_ROOTS:
        return
    service_mods = {m for m in mods if _top(m) == "service"}
    bad = {m for m in service_mods if not m.startswith(SHARED)}
    assert not bad, f"{path.name} imports {sorted(bad)}; compute code may use only {SHARED}"


@pytest.mark.parametrize(
    "path", _files("service") + _files("workers") + _files("api"), ids=lambda p: p.name
)
def test_only_the_executor_imports_ray(path: Path) -> None:
    if path == ROOT / "workers" / "executor.py":
        return
    assert "ray" not in {_top(m) for m in imported_modules(path)}, path


@pytest.mark.parametrize("path", _files("api"), ids=lambda p: str(p.relative_to(ROOT)))
def test_api_needs_neither_torch_ray_nor_workers(path: Path) -> None:
    bad = {m for m in imported_modules(path) if _top(m) in {"workers", "torch", "ray"}}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import ray\nfrom service.storage import Store\nfrom . import x\n")
    assert {"ray", "service.storage", "service.storage.Store"} <= imported_modules(f)
