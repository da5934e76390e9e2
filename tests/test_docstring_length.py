"""Docstrings stay short: what a thing is and why, in a few lines; measurements and study narratives live in
docs/studies/ (issue 27).  This checks length only, never wording."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ssl_studio"
MAX_LINES = 25


def long_docstrings(package: Path = PACKAGE, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc is not None and len(doc.splitlines()) > limit:
                    name = getattr(node, "name", "module docstring")
                    found.append(f"{path.relative_to(package.parent)}: {name} ({len(doc.splitlines())} lines)")
    return found


def test_no_docstring_is_longer_than_25_lines():
    assert long_docstrings() == [], "move the measurements to docs/studies/ and link them"


def test_the_check_sees_a_long_docstring(tmp_path):
    package = tmp_path / "ssl_studio"
    package.mkdir()
    (package / "long.py").write_text('def f():\n    """' + "line\n" * 26 + '"""\n')
    (package / "short.py").write_text('"""' + "line\n" * 25 + '"""\n')
    assert long_docstrings(package) == ["ssl_studio/long.py: f (26 lines)"]
