"""The layout of mesostats.data: small modules, one-way imports, all at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import mesostats.data

DATA = Path(mesostats.data.__file__).resolve().parent
MAX_LINES = 500


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(DATA.rglob("*.py")):
        name = ".".join(path.relative_to(DATA.parent.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def test_every_data_module_has_a_docstring_and_at_most_500_lines() -> None:
    for path in DATA.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= MAX_LINES, path.name
        assert ast.get_docstring(ast.parse(text)), path.name


def test_data_modules_import_mesostats_only_at_module_level() -> None:
    for name, tree in modules().items():
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mesostats"):
                assert id(node) in top, f"{name}: function-level import of {node.module}"


def test_data_modules_import_each_other_without_cycles() -> None:
    trees = modules()
    edges = {
        name: {
            node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module in trees
        }
        for name, tree in trees.items()
    }
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for target in edges[name]:
            visit(target, (*path, name))
        done.add(name)

    assert "mesostats.data.readers.csv" in edges and "mesostats.data.load" in edges
    for name in edges:
        visit(name, ())
