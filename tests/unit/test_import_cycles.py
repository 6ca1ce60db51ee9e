"""No import cycles in src/ferry: every import counts, also one under TYPE_CHECKING or
inside a function, since such an import only hides a cycle from the interpreter, not
from the reader (two modules that need each other are one module, or need a third)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of src/ferry that a module's source names in any import statement."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from ferry.client import staging` names a module, not the package.
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else base for t in targets]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """{module: the modules of the tree it imports}, for every .py file under root/ferry."""
    files = {_module_name(path, root): path for path in sorted((root / "ferry").rglob("*.py"))}
    modules = set(files)
    return {
        name: _imported(ast.parse(path.read_text(), str(path)), name,
                        path.name == "__init__.py", modules)
        for name, path in files.items()
    }  # fmt: skip


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports
    itself (Tarjan's algorithm, iterative: no recursion limit on a deep import chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return found


def test_src_has_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (TYPE_CHECKING and in-function imports count): " + "; ".join(
        " <-> ".join(component) for component in found
    )


def test_the_cycle_finder_finds_a_cycle_hidden_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "ferry"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from ferry import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ferry.c import C\n"
    )
    (package / "c.py").write_text("def f():\n    from . import a\n")
    (package / "d.py").write_text("import ferry.a\n")
    assert cycles(import_graph(tmp_path)) == [["ferry.a", "ferry.b", "ferry.c"]]


def test_the_cycle_finder_passes_a_tree_without_cycles(tmp_path: Path) -> None:
    package = tmp_path / "ferry"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "x.py").write_text("from ferry.sub import y\nfrom .. import z\n")
    (package / "sub" / "y.py").write_text("from ferry import z\n")
    (package / "z.py").write_text("import os\n")
    assert cycles(import_graph(tmp_path)) == []
    assert import_graph(tmp_path)["ferry.sub.x"] == {"ferry.sub.y", "ferry.z"}
