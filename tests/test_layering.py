"""The package is layered: no import cycle between evlog's modules, and the engine never imports the façade.

Every import counts, at module level and inside functions (an import inside a function hides a cycle, it does
not remove it); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import evlog

SRC = Path(evlog.__file__).resolve().parent

#: Modules that may import the public package itself (``from evlog import configure``): the façade, and the
#: modules users import next to it, which sit on top of it.
FACADE = {"evlog", "evlog.__main__"}


def _module_name(path: Path) -> str:
    parts = ("evlog", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


MODULES = {_module_name(path): path for path in SRC.rglob("*.py")}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(name: str) -> set[str]:
    """The evlog modules ``name`` imports; ``evlog`` itself when it imports a name from the package."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        found.update(t for t in targets if t == "evlog" or t.startswith("evlog."))
    found.discard(name)
    return found


def _cycles() -> list[list[str]]:
    graph = {name: {t for t in imports_of(name) if t in MODULES and t != "evlog"} for name in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_module_list_is_complete() -> None:
    assert {"evlog", "evlog._intake", "evlog._api", "evlog.exporters._base"} <= set(MODULES)


def test_no_import_cycle_between_evlog_modules() -> None:
    cycles = _cycles()
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_engine_never_imports_the_public_facade() -> None:
    offenders = sorted(name for name in MODULES if name not in FACADE and "evlog" in imports_of(name))
    assert not offenders, f"modules importing names from the evlog package itself: {offenders}"


def test_the_hot_path_imports_nothing_of_the_engine() -> None:
    """``_intake`` reaches the client through an interface, so it can never close a cycle with it."""
    allowed = {"evlog._build", "evlog._event", "evlog._validate", "evlog._errors", "evlog._values"}
    allowed |= {"evlog._accounting", "evlog._guard", "evlog._context"}
    assert imports_of("evlog._intake") <= allowed


def test_the_check_finds_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    """The cycle finder must see through imports inside functions, or it would pass on what it exists for."""
    MODULES["evlog._probe_a"] = tmp_path / "a.py"
    MODULES["evlog._probe_b"] = tmp_path / "b.py"
    (tmp_path / "a.py").write_text("from evlog import _probe_b\n")
    (tmp_path / "b.py").write_text("def f():\n    from evlog._probe_a import x\n")
    try:
        assert any("evlog._probe_a" in cycle for cycle in _cycles())
    finally:
        del MODULES["evlog._probe_a"], MODULES["evlog._probe_b"]
