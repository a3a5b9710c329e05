"""No production function longer than 60 lines without a reason: read from the source with
``ast`` (a function's lines run from its ``def`` to its last line, decorators not counted; a
nested function counts in its parent too, and on its own)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.auxil.imports import PACKAGES, ROOT

MAX_LINES = 60

EXEMPT_FOLDERS = (
    # An Alembic migration is one unit: its upgrade() is the schema change, read (and reviewed)
    # top to bottom against the revision before it; it is never edited once released.
    "storage/migrations/versions",
)

ALLOWED: dict[str, str] = {
    # Straight-line declarations of the local Bot API server's state, in four commented groups
    # (identity, knobs, what the bot did, internal state), without a branch. Split into helper
    # methods, the attributes would be defined outside __init__, where readers and type
    # checkers look for them, and nothing would be gained: there is no step to name.
    "bot/sandbox/core.py:SandboxCore.__init__": "the sandbox's state, declared in one place",
}


def _functions(tree: ast.Module) -> list[tuple[str, int]]:
    """Every function and method of a module: its qualified name and its length in lines."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                assert child.end_lineno is not None
                found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def long_functions(root: Path) -> dict[str, int]:
    """``path:qualified name`` -> lines, for every function over ``MAX_LINES`` in the
    production packages (the exempt folders left out)."""
    long: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(tuple(folder + "/" for folder in EXEMPT_FOLDERS)):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for name, lines in _functions(tree):
                if lines > MAX_LINES:
                    long[f"{relative}:{name}"] = lines
    return long


def test_no_production_function_is_longer_than_60_lines_without_a_reason() -> None:
    found = long_functions(ROOT)
    unexplained = {name: lines for name, lines in found.items() if name not in ALLOWED}
    assert unexplained == {}, (
        f"split these along their seams into named helpers (at most {MAX_LINES} lines each), "
        "or add them to ALLOWED with the reason"
    )
    stale = sorted(set(ALLOWED) - set(found))
    assert stale == [], "no longer too long (or gone): drop them from ALLOWED"


def test_the_measure(tmp_path: Path) -> None:
    def body(lines: int, indent: int = 4) -> str:
        """What makes a function ``lines`` long, its ``def`` line included."""
        return "".join(f"{' ' * indent}x{index} = {index}\n" for index in range(lines - 1))

    files = {
        "bot/__init__.py": "",
        "bot/long.py": (
            f"@decorator\ndef long():\n{body(MAX_LINES + 1)}"
            f"def fits():\n{body(MAX_LINES)}"
            f"class Thing:\n    async def method(self):\n{body(MAX_LINES + 1, 8)}"
        ),
        "handlers/__init__.py": "",
        "handlers/nested.py": f"def outer():\n    def inner():\n{body(MAX_LINES + 1, 8)}",
        "storage/migrations/versions/0001_x.py": f"def upgrade():\n{body(MAX_LINES + 5)}",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert long_functions(tmp_path) == {
        "bot/long.py:long": MAX_LINES + 1,
        "bot/long.py:Thing.method": MAX_LINES + 1,
        "handlers/nested.py:outer": MAX_LINES + 2,
        "handlers/nested.py:outer.inner": MAX_LINES + 1,
    }
