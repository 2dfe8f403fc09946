"""The parts of unipixel_ros import each other without cycles.

A cycle (``model`` importing ``decoders`` importing ``model`` back, even from inside a
function) ties the parts together: neither can be used, tested or changed alone. The
check reads every import statement, function-level ones included, without importing
anything.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unipixel_ros"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, wherever the statement is."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


def _part(module: str) -> str | None:
    """The top-level module or subpackage of unipixel_ros that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "unipixel_ros" and len(parts) > 1 else None


def part_imports() -> dict[str, set[str]]:
    """Part -> the other parts it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _part(_module_name(path))
        for name in _imported(path):
            target = _part(name)
            if source and target and target != source:
                graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done and (cycle := visit(nxt, path + [nxt])):
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done and (cycle := visit(node, [node])):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"b"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_the_parts_of_the_package_import_each_other_without_cycles() -> None:
    graph = part_imports()
    assert "decoders" in graph["model"]              # the model uses the backends, so not back
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
