"""The layering of ssl_studio, kept by a test: no import cycle, objectives above neither the engine nor a data
source, and no Qt outside ssl_studio/gui (docs/architecture: the one rule).

The graph is read from the source with ``ast`` (every ``import``, including those inside functions, which is
where a cycle hides), so it needs no import and sees modules that are never executed by the other tests.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssl_studio"
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")
# The two commands that open Qt on purpose, each importing it only inside the function that needs it, so that
# importing the module stays Qt-free: ``ssl-studio gui`` opens the window, ``ssl-studio bench --gui`` measures it.
WINDOW_LAUNCHERS = {("ssl_studio.cli", "ssl_studio.gui.app"), ("ssl_studio.benchmarks.report", "ssl_studio.gui.benchmark")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_names_of(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The modules one import statement of module ``name`` imports: ``from a import b`` is ``a.b`` when that is a module."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = name.split(".") if is_package else name.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    return {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}


def imported_names(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports, anywhere in its file, including inside functions (where a cycle hides)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= imported_names_of(node, name, path.name == "__init__.py", modules)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the ssl_studio modules it imports (their parent packages are not counted as edges)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m in imported_names(path, name, modules) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def top_level_imports(path: Path, name: str) -> set[str]:
    """The modules ``name`` imports when it is imported (not those imported inside its functions)."""
    modules = all_modules()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found |= imported_names_of(node, name, path.name == "__init__.py", modules)
        else:
            stack.extend(ast.iter_child_nodes(node))
    return found


def test_find_cycle_names_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_objectives_import_neither_the_engine_nor_a_data_source():
    wrong = sorted(f"{m} imports {dep}" for m, deps in import_graph().items() if m.startswith("ssl_studio.objectives")
                   for dep in deps if dep.startswith(("ssl_studio.engine", "ssl_studio.data")))
    assert not wrong, "; ".join(wrong)


def is_qt(module: str) -> bool:
    return module.split(".")[0] in QT_MODULES or module == "ssl_studio.gui" or module.startswith("ssl_studio.gui.")


def test_no_qt_outside_the_gui():
    modules = all_modules()
    wrong = []
    for name, path in modules.items():
        if name.startswith("ssl_studio.gui"):
            continue
        for dep in sorted(imported_names(path, name, modules)):
            if is_qt(dep) and (name, dep) not in WINDOW_LAUNCHERS:
                wrong.append(f"{name} imports {dep}")
        for dep in sorted(top_level_imports(path, name)):
            if is_qt(dep):
                wrong.append(f"{name} imports {dep} when it is imported")
    assert not wrong, "; ".join(wrong)


_IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "ssl_studio" or m.startswith("ssl_studio.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = [n for n in all_modules() if n != "ssl_studio.__main__"]
    if importlib.util.find_spec("PySide6") is None:
        names = [n for n in names if not n.startswith("ssl_studio.gui")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"modules that do not import alone:\n{done.stdout}{done.stderr[-2000:]}"


if __name__ == "__main__":  # pragma: no cover - a quick look at the graph
    print(find_cycle(import_graph()))
    pytest.main([__file__])
