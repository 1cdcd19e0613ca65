"""No import loop inside tinyeval/adapters: every import statement counts, function-local and TYPE_CHECKING
ones too."""

import ast
from pathlib import Path

import tinyeval

PKG = "tinyeval.adapters"
ROOT = Path(tinyeval.__file__).parent / "adapters"


def _edges(path: Path, modules: set[str]) -> set[str]:
    """The sibling modules `path` imports (`from tinyeval.adapters import x` counts as x when x is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PKG:
                found |= {a.name for a in node.names if a.name in modules}
            elif node.module.startswith(PKG + "."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith(PKG + ".")}
    return found - {path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else path + [nxt]
            if nxt not in state and (loop := visit(nxt, path + [nxt])):
                return loop
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (loop := visit(start, [start])):
            return loop
    return None


def test_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_adapters_have_no_import_loop():
    files = {p.stem: p for p in ROOT.glob("*.py") if p.stem != "__init__"}
    graph = {name: _edges(path, set(files)) for name, path in files.items()}
    assert graph["registry"] >= {"lowrank", "lora", "full"}  # the parser sees the edges that matter
    assert "registry" in graph["config"]  # ... function-local ones included
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
