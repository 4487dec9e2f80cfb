"""The package's shape: imports at module top, no cycles, a light ``import ped``, short modules.

The import graph is read statically (``ast``), so the tests are fast and independent of the order
in which modules happen to be imported.  An edge ``a -> b`` is a top-level import in ``a`` of
``b`` (``from ped.x import y`` is an edge to ``ped.x.y`` when that is a module, else to ``ped.x``);
imports under ``if TYPE_CHECKING`` are not edges.  Importing a submodule runs its parent package
first, but that is no dependency of the submodule's code, so parent packages are not edges.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ped"

#: Dependencies a function may import where it needs them: optional ones (the torch, zoo, sweep
#: and book groups of pyproject.toml), each heavy to import or absent from the core install, and
#: two that must be chosen at call time.
LAZY_ALLOWED = {
    "torch", "torchvision", "lightly", "PIL", "fontTools",  # ped[torch], ped[zoo]
    "distributed", "dask",  # ped[sweep]
    "matplotlib", "jupytext", "papermill", "yaml", "jupyter_client", "nbformat",  # ped[book]
    "fcntl",  # POSIX only: the rest of the package imports on any system
    "tqdm",  # ped._progress picks the notebook widget or the text bar when a bar is made
}  # fmt: skip
HEAVY = LAZY_ALLOWED - {"fcntl", "tqdm"}
LIMIT_LINES = 500
REASON_MARKER = "*Why one module of"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules (any package's, dotted) that one import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(top-level imports, [(line, name) of each import inside a function])."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    top: set[str] = set()
    inner: list[tuple[int, str]] = []

    def visit(body: list[ast.stmt], in_function: bool) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = _targets(module, is_package, node)
                if in_function:
                    inner.extend((node.lineno, n) for n in names)
                else:
                    top.update(names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, True)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, in_function)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit([child] if isinstance(child, ast.stmt) else child.body, in_function)

    visit(tree.body, False)
    return top, inner


IMPORTS = {m: _imports(m) for m in MODULES}
GRAPH = {m: {t for t in top if t in MODULES and t != m} for m, (top, _) in IMPORTS.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            parts = m.split(".")
            todo.extend(GRAPH[m] | {".".join(parts[:i]) for i in range(1, len(parts))})
    return seen


def _pulls_heavy(module: str) -> bool:
    return any(t.split(".")[0] in HEAVY for m in _closure(module) for t in IMPORTS[m][0])


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) in (
        ["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"])  # fmt: skip
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no cycle
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_graph_is_read_from_the_sources():
    # positive controls: edges and a lazy import the package is known to have
    assert "ped.metrics" in GRAPH["ped.scoring"]
    assert "ped.bench.tasks" in GRAPH["ped.bench.pool"]
    assert "ped.bench.zoo.methods" in {n for _, n in IMPORTS["ped.bench.zoo.train"][1]}
    assert _pulls_heavy("ped.bench.zoo.methods") and not _pulls_heavy("ped.bench.zoo.train")
    assert len(MODULES) > 60


def test_the_package_has_no_import_cycle():
    assert find_cycle(GRAPH) is None


def test_imports_are_at_module_top_unless_heavy_and_optional():
    offenders = []
    for module, (_, inner) in IMPORTS.items():
        for line, name in inner:
            root = name.split(".")[0]
            if root == "ped":
                if name in MODULES and _pulls_heavy(name):
                    continue  # e.g. the zoo's methods, which import torch and lightly at top
            elif root in LAZY_ALLOWED:
                continue
            offenders.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} {name}")
    assert not offenders, "imports inside functions that belong at module top:\n" + "\n".join(
        offenders
    )


def test_import_ped_and_the_command_line_leave_the_optional_groups_out():
    code = (
        "import sys, ped, ped.cli; ped.cli.build_parser(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_long_module_says_why(module):
    path = MODULES[module]
    text = path.read_text(encoding="utf-8")
    if text.count("\n") > LIMIT_LINES:
        docstring = ast.get_docstring(ast.parse(text)) or ""
        assert REASON_MARKER in docstring, f"{path.name}: over {LIMIT_LINES} lines, no reason"
