"""carebot's import graph, read from the source with ``ast`` (function-local imports included:
they hide a cycle, they don't remove it).

    python -m tests.auxil.imports               # the package graph, then any cycle and rule broken
    python -m tests.auxil.imports OTHER_CHECKOUT  # the same for another tree (an older commit)

Packages are the top-level folders, except that ``bot``'s subpackages (``bot.kernel``, the
shared kernel; ``bot.sandbox``, the local Bot API server) count apart from the composition
root's own modules (``bot.app``, ``bot.cli``, …), which may import everything.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "scheduler", "storage", "surveys", "dashboard")
BOT_SUBPACKAGES = ("bot.kernel", "bot.sandbox")
TELEGRAM_ALLOWED = (
    "bot",
    "bot.sandbox",
    "bot.kernel.render",
    "handlers",
    "scheduler.dispatcher.telegram",
)
"""Where ``telegram`` may be imported: the composition root, the sandbox, the renderer the
handlers' edges and the dispatcher share, the handlers' edges, the dispatcher's Telegram side."""


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """Module -> carebot modules it imports."""
    telegram: set[str] = field(default_factory=set)
    """Modules that import ``telegram`` themselves."""


def package_of(module: str) -> str:
    """The package a module counts in (``bot.kernel.texts`` -> ``bot.kernel``)."""
    for sub in BOT_SUBPACKAGES:
        if module == sub or module.startswith(sub + "."):
            return sub
    return module.split(".")[0]


def is_root(module: str) -> bool:
    """A module of the composition root (``bot`` itself, not its kernel or sandbox)."""
    return package_of(module) == "bot"


def read_graph(root: Path = ROOT) -> Graph:
    graph = Graph()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            graph.modules[".".join(parts)] = path
    for module, path in graph.modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from a import b``: the module a.b when there is one, else a itself.
                names = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in graph.modules
                    else node.module
                    for a in node.names
                ]
            else:
                continue
            for name in names:
                if name == "telegram" or name.startswith("telegram."):
                    graph.telegram.add(module)
                target = _resolve(graph, name)
                if target is not None and target != module and not module.startswith(target + "."):
                    graph.imports[module].add(target)
    return graph


def _resolve(graph: Graph, name: str) -> str | None:
    while name and name not in graph.modules:
        name = name.rpartition(".")[0]
    return name or None


def package_graph(graph: Graph) -> dict[str, set[str]]:
    """Package -> packages its modules import (the composition root's imports left out: it
    may import everything)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.imports.items():
        if is_root(module):
            continue
        for target in targets:
            if package_of(target) != package_of(module):
                edges[package_of(module)].add(package_of(target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted({*edges, *(t for ts in edges.values() for t in ts)}):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def broken_rules(graph: Graph) -> list[str]:
    """Every rule of the layout the code breaks, one line each (empty: all hold)."""
    problems = [f"module cycle: {' <-> '.join(c)}" for c in cycles(graph.imports)]
    problems += [f"package cycle: {' <-> '.join(c)}" for c in cycles(package_graph(graph))]
    for module, targets in sorted(graph.imports.items()):
        package = package_of(module)
        for target in sorted(targets):
            if package == "storage" and package_of(target) not in ("storage", "bot.kernel"):
                problems.append(f"storage imports another package: {module} -> {target}")
            if not is_root(module) and is_root(target):
                problems.append(
                    f"the composition root imported by a package: {module} -> {target}"
                )
            if package == "bot.kernel" and package_of(target) != "bot.kernel":
                problems.append(f"the kernel imports another package: {module} -> {target}")
            if not is_root(module) and module not in graph.telegram and target in graph.telegram:
                problems.append(
                    f"a module without Telegram imports one with it: {module} -> {target}"
                )
    for module in sorted(graph.telegram):
        if not any(module == place or package_of(module) == place for place in TELEGRAM_ALLOWED):
            problems.append(f"telegram imported outside the edges: {module}")
    return problems


def main() -> None:
    graph = read_graph(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    edges = package_graph(graph)
    for package in sorted(edges):
        print(f"{package:12} -> {', '.join(sorted(edges[package]))}")
    problems = broken_rules(graph)
    print("\n".join(problems) if problems else "no cycle, every layout rule holds")


if __name__ == "__main__":
    main()
