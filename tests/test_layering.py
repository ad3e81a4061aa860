"""Keep the import graph honest (DESIGN.md "Dependencies", STYLE.md 3.2).

* ``service`` never imports ``workers``, ``api`` or ``cli``, nor torch, ray or fastapi;
* compute code in ``workers`` imports only the shared contract of service (spec, results,
  errors, teachers) and the spectra's fits (``service.fitting.tails``, numpy only: a spectrum
  is fitted where it is computed); the Ray adapter (``workers/executor.py``) also the executor
  protocol;
* ``api`` imports neither ``workers``, ``cli``, torch nor ray;
* only ``workers/executor.py`` imports ray;
* the composition roots -- the ``cli`` package, and ``workers/__main__.py`` which hands
  over to it -- may import anything; nothing imports them;
* no import cycles among the project's modules.

Imports are read with ``ast``: absolute and relative ``import`` statements, and string
literals given to ``importlib.import_module`` / ``__import__`` (a dispatch through
importlib is still a dependency). The checker has tests of its own at the end.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "workers", "api", "cli")
SHARED = (
    "service.spec",
    "service.results",
    "service.errors",
    "service.teachers",
    "service.fitting.tails",
    "service.resources",
)
RAY_ADAPTER = "workers/executor.py"
COMPOSITION_ROOTS = ("cli/", "workers/__main__.py")
"""By module path: files under these prefixes (or this file) may import anything."""


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a file under ``root`` (a package's __init__ is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module a file imports: absolute, relative (resolved) and importlib literals."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".") if package else []
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            if base:
                mods.add(base)
            mods.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                mods.add(arg.value)
    return mods


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def project_files(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> list[Path]:
    """Every .py file of the project's packages."""
    return sorted(p for pkg in packages for p in (root / pkg).rglob("*.py"))


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name resolves to its longest module)."""
    files = {module_name(p, root): p for p in project_files(root, packages)}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for target in imported_modules(path, root):
            r = resolve(target)
            # a module importing itself, a child its own package (name re-exports) or a
            # package's __init__ its own children are not dependencies between concepts
            if r is None or r == mod or mod.startswith(r + ".") or r.startswith(mod + "."):
                continue
            graph[mod].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_root(path: Path) -> bool:
    rel = _rel(path)
    return any(rel == r or (r.endswith("/") and rel.startswith(r)) for r in COMPOSITION_ROOTS)


def _top(mod: str) -> str:
    return mod.split(".")[0]


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("service"), ids=_rel)
def test_service_imports_no_workers_api_cli_or_heavy_frameworks(path: Path) -> None:
    heavy = {"workers", "api", "cli", "torch", "ray", "fastapi"}
    bad = {m for m in imported_modules(path) if _top(m) in heavy}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [p for p in _files("workers") if not _is_root(p)], ids=_rel)
def test_worker_code_imports_only_the_shared_contract(path: Path) -> None:
    mods = imported_modules(path)
    allowed = (*SHARED, "service.orchestration.executor") if _rel(path) == RAY_ADAPTER else SHARED
    bad = {m for m in mods if _top(m) in ("api", "cli")}
    bad |= {m for m in mods if _top(m) == "service" and not m.startswith(allowed)}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}; compute code may use only {allowed}"


@pytest.mark.parametrize("path", _files("api"), ids=_rel)
def test_api_needs_neither_torch_ray_workers_nor_cli(path: Path) -> None:
    bad = {m for m in imported_modules(path) if _top(m) in {"workers", "cli", "torch", "ray"}}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", project_files(), ids=_rel)
def test_only_the_ray_adapter_imports_ray_and_nothing_imports_a_composition_root(
    path: Path,
) -> None:
    mods = {_top(m) for m in imported_modules(path)}
    if _rel(path) != RAY_ADAPTER:
        assert "ray" not in mods, _rel(path)
    if not _is_root(path):
        assert "cli" not in mods, f"{_rel(path)} imports the composition root"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_packages_under_test_are_the_repositorys_not_test_directories(package: str) -> None:
    # tests/service, tests/workers, ... mirror the packages without __init__.py; were the
    # repository not on sys.path they would shadow the packages as namespace packages
    mod = importlib.import_module(package)
    assert mod.__file__ == str(ROOT / package / "__init__.py")


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


# -- the checker's own tests ------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checker_sees_absolute_relative_and_importlib_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/m.py": (
                "import ray\nfrom service.storage import Store\nfrom . import x\n"
                "from ..other import y\nimport importlib\nimportlib.import_module('workers.cli')\n"
            ),
        },
    )
    found = imported_modules(root / "pkg/sub/m.py", root)
    assert {"ray", "service.storage", "service.storage.Store"} <= found
    assert {"pkg.sub.x", "pkg.other", "pkg.other.y", "workers.cli"} <= found


def test_a_deliberately_added_cycle_fails_the_check(tmp_path: Path) -> None:
    clean = {
        "svc/__init__.py": "",
        "svc/a.py": "from svc.b import f\n",
        "svc/b.py": "def f() -> None: ...\n",
        "wrk/__init__.py": "",
        "wrk/c.py": "from svc import a\n",
    }
    root = _tree(tmp_path, clean)
    assert cycles(import_graph(root, ("svc", "wrk"))) == []
    # b now reaches back to a through wrk/c, the way an importlib dispatch once did
    (root / "svc/b.py").write_text(
        "import importlib\nmod = importlib.import_module('wrk.c')\ndef f() -> None: ...\n"
    )
    assert cycles(import_graph(root, ("svc", "wrk"))) == [["svc.a", "svc.b", "wrk.c"]]
    (root / "svc/b.py").write_text("from .a import g\ndef f() -> None: ...\n")  # relative
    assert cycles(import_graph(root, ("svc", "wrk"))) == [["svc.a", "svc.b"]]
