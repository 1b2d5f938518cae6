"""The import graph of the `tts` package, read from the source (every import, lazy ones inside
functions included), and the cycles in it.

    python -m tools.imports [PACKAGE ...]     # e.g. tts.sampling tts.narrate; default: tts

Prints each import cycle among the modules of the given packages (none: "no import cycles").
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that the file at `path` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod (pkg itself is being imported already when pkg is ours)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `from a.b import c` imports a.b (and c if a module)
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: str = "tts") -> dict[str, set[str]]:
    """module -> the modules of `package` it imports."""
    files = sorted((ROOT / package.replace(".", "/")).rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imported(f, modules) for f in files}


def cycles(graph: dict[str, set[str]], within: str) -> list[list[str]]:
    """Import cycles among the modules under `within` (each once, as the list of its modules)."""
    nodes = {m for m in graph if m == within or m.startswith(within + ".")}
    found, seen = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node] & nodes):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle + [nxt])
            elif len(path) < len(nodes):
                visit(nxt, path + [nxt])

    for start in sorted(nodes):
        visit(start, [start])
    return found


if __name__ == "__main__":
    graph = import_graph("tts")
    problems = [c for package in (sys.argv[1:] or ["tts"]) for c in cycles(graph, package)]
    for cycle in problems:
        print(" -> ".join(cycle))
    print(f"{len(problems)} import cycles" if problems else "no import cycles")
    sys.exit(1 if problems else 0)
