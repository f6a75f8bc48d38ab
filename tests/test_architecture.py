"""The layout rules of issue #9, checked on the source: no import cycles (function-level imports
included), no private module of another package imported, no hub modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "iapo"

#: Modules allowed over the size limit: data tables and the loopback test server.
BIG_OK = {"iapo.testing.fake_openai"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every iapo module ``name`` imports at run time, at any depth of its code (imports under
    ``if TYPE_CHECKING:`` excluded)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("iapo"):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("iapo"):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _package_of(module: str, modules: dict[str, Path]) -> str:
    path = modules[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """The checker itself: a planted function-level cycle is found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from iapo.b import g\n")
    modules = {"iapo.a": a, "iapo.b": tmp_path / "b.py"}
    (tmp_path / "b.py").write_text("from iapo.a import f\n")
    assert _imports("iapo.a", a, modules) == {"iapo.b"}
    assert _imports("iapo.b", tmp_path / "b.py", modules) == {"iapo.a"}
    c = tmp_path / "c.py"
    c.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from iapo.a import f\n")
    assert _imports("iapo.c", c, {**modules, "iapo.c": c}) == set()


def test_no_private_module_of_another_package_is_imported() -> None:
    modules = _modules()
    graph = _graph()
    bad = []
    for importer, targets in graph.items():
        own = _package_of(importer, modules)
        for target in targets:
            parent, _, leaf = target.rpartition(".")
            if leaf.startswith("_") and parent != own:
                bad.append(f"{importer} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_hub_modules() -> None:
    too_big = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES and name not in BIG_OK
    }
    assert not too_big, f"modules over {MAX_LINES} lines: {too_big}"


def test_the_library_never_imports_the_package_root() -> None:
    """``from iapo import x`` inside iapo loads the root, which imports everything: a cycle
    waiting to happen. Subpackages are imported by their own names."""
    modules = _modules()
    offenders = [name for name, deps in _graph().items() if "iapo" in deps and name != "iapo"]
    assert not offenders, offenders
    assert "iapo" in modules


def test_the_exception_tree_in_errors_docstring_is_the_real_one() -> None:
    from iapo import errors

    node = re.compile(r"^\s*(?:[│ ]*[├└]── )?(\w+Error)\b")
    drawn: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []  # (column, name) of the open ancestors
    for line in (errors.__doc__ or "").splitlines():
        m = node.match(line)
        if m is None:
            continue
        while stack and stack[-1][0] >= m.start(1):
            stack.pop()
        drawn[m.group(1)] = stack[-1][1] if stack else None
        stack.append((m.start(1), m.group(1)))
    real = {
        name: (cls.__bases__[0].__name__ if cls.__bases__[0] is not Exception else None)
        for name in errors.__all__
        if isinstance(cls := getattr(errors, name), type)
    }
    assert len(drawn) == len(real) > 5
    assert drawn == real
