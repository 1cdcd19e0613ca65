"""The whole package's import graph has no loop: every import statement counts (function-local and
TYPE_CHECKING ones too), a package's `__init__` counts as the package, and `from pkg import mod` counts as mod."""

import ast
from pathlib import Path

import tinyeval

ROOT = Path(tinyeval.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("tinyeval"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else _resolve(base, modules))
        elif isinstance(node, ast.Import):
            found |= {_resolve(a.name, modules) for a in node.names if a.name.startswith("tinyeval")}
    # a module importing its own package's __init__ (or an ancestor) is not a loop worth reporting: __init__
    # files here only re-export lazily (PEP 562)
    return {t for t in found if t and t != name and not name.startswith(t + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (loop := visit(nxt, path + [nxt])):
                return loop
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (loop := visit(start, [start])):
            return loop
    return None


def test_the_cycle_finder_finds_loops():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_loop():
    modules = _modules()
    graph = {name: _edges(name, path, modules) for name, path in modules.items()}
    assert "tinyeval.console" in graph["tinyeval.cli"]  # the parser sees real edges ...
    assert graph["tinyeval.adapters.registry"] >= {f"tinyeval.adapters.{m}" for m in ("lowrank", "lora", "full")}
    assert "tinyeval.adapters.registry" in graph["tinyeval.adapters.config"]  # ... function-local ones included
    loop = _cycle(graph)
    assert loop is None, " -> ".join(loop)


def test_no_module_imports_the_cli():
    """cli.py loads every area's commands.py by name (importlib): an import back would be a hidden loop."""
    modules = _modules()
    importers = [name for name, path in modules.items() if "tinyeval.cli" in _edges(name, path, modules)]
    assert importers == []
