"""Every place the code keeps state beyond one request, found by reading the source (``ast``):

- functions memoised with ``functools.lru_cache`` / ``functools.cache`` / ``cached_property``;
- module globals a function rebinds (``global``) and private module-level or class-level mutable
  containers or objects (``_name = {}``, ``dict()``, ``threading.local()``, ``_Pool()``, ...);
- writes to Django's cache (``cache.set``/``add``/``set_many``/``get_or_set``/``incr``/...).

tests/test_scaleout.py holds the inventory of what is allowed and why; a new cache anywhere in
``oidc_provider_ext`` or ``idp_project`` fails that test until it is listed there with how a change
made through another server reaches it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("oidc_provider_ext", "idp_project")
MEMOISERS = {"lru_cache", "cache", "cached_property"}
CACHE_WRITES = {"set", "add", "set_many", "get_or_set", "incr", "decr", "touch"}
CONTAINERS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque", "local"}
CONTAINERS |= {"WeakValueDictionary", "WeakKeyDictionary"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Subscript):  # caches["alias"]
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


# Instances that hold no data of their own (locks, paths) are not state worth listing.
STATELESS_CLASSES = {
    "Lock",
    "RLock",
    "Event",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Path",
    "TypeVar",
}


def _mutable(value: ast.AST | None) -> bool:
    """A container, or an instance of a class (``_pool = _Pool()``): either may hold state."""
    if isinstance(value, ast.Dict | ast.List | ast.Set):
        return True
    if not isinstance(value, ast.Call):
        return False
    name = _name(value)
    return name in CONTAINERS or (name.lstrip("_")[:1].isupper() and name not in STATELESS_CLASSES)


def _assigned(stmt: ast.stmt) -> list[tuple[str, ast.AST | None]]:
    if isinstance(stmt, ast.Assign):
        return [(t.id, stmt.value) for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [(stmt.target.id, stmt.value)]
    return []


def _module_state(module: str, tree: ast.Module) -> set[str]:
    rebound = {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}
    found = set()
    for stmt in tree.body:
        for name, value in _assigned(stmt):
            if name in rebound or (name.startswith("_") and not name.startswith("__") and _mutable(value)):
                found.add(f"{module}.{name}")
    return found


def _nested_state(module: str, tree: ast.Module) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                if any(_name(decorator) in MEMOISERS for decorator in child.decorator_list):
                    found.add(f"{module}.{scope}{child.name}")
                visit(child, f"{scope}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                for stmt in child.body:
                    for name, value in _assigned(stmt):
                        if name.startswith("_") and not name.startswith("__") and _mutable(value):
                            found.add(f"{module}.{scope}{child.name}.{name}")
                visit(child, f"{scope}{child.name}.")
            else:
                if (
                    isinstance(child, ast.Call)
                    and isinstance(child.func, ast.Attribute)
                    and child.func.attr in CACHE_WRITES
                    and _name(child.func.value) in ("cache", "caches")
                ):
                    found.add(f"{module}.{scope.rstrip('.')}:cache.{child.func.attr}")
                visit(child, scope)

    visit(tree, "")
    return found


def find() -> set[str]:
    """Dotted names of every cache and piece of process state in the packages."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found |= _module_state(module, tree) | _nested_state(module, tree)
    return found
