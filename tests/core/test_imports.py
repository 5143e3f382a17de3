"""The package's import graph: no cycle at run time, and the core imports no room above it."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "geventpool"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it is imported (TYPE_CHECKING blocks,
    and imports inside functions, left out)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("geventpool"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                if not target.startswith("geventpool"):
                    continue
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if _exists(candidate) else target)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    found.discard(name)
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _runtime_imports(p) for p in PACKAGE.rglob("*.py")}


def test_no_import_cycle_at_run_time() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    # a package importing its own submodules is not a cycle unless the submodule imports back
    real = [c for c in cycles if not all(b.startswith(a + ".") or a.startswith(b + ".")
                                          for a, b in itertools.pairwise(c))]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)


def test_the_core_imports_neither_ldap_nor_dbapi() -> None:
    graph = _graph()
    rooms_prefix = ("geventpool.ldap", "geventpool.dbapi")
    core = [m for m in graph if m.count(".") == 1 and not m.startswith(rooms_prefix)]
    for module in core:
        rooms = {i for i in graph[module] if i.startswith(rooms_prefix)}
        assert not rooms, f"{module} imports {rooms}"


def test_importing_the_ldap_pool_does_not_load_the_compat_face() -> None:
    """Issue 12, item 9: ldap_core_shared's face is a room of its own, loaded only when used."""
    import subprocess
    import sys

    code = (
        "import sys, geventpool.ldap\n"
        "assert 'geventpool.ldap.compat' not in sys.modules, 'loaded by import geventpool.ldap'\n"
        "from geventpool.ldap import LDAPConnectionManager\n"
        "assert LDAPConnectionManager.__module__ == 'geventpool.ldap.compat.manager'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
