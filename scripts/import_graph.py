"""The real import graph of the tap_rhttp package, for docs/architecture.md and its tests.

    .venv/bin/python scripts/import_graph.py

Every module is read with ``ast`` (nothing is imported). An import at module level is a
*runtime* edge; one inside ``if t.TYPE_CHECKING:`` is a *type-only* edge; one anywhere
else (inside a function or class) is a *local* import, which the package does not use.
``tests/test_architecture.py`` checks the layering rules on this graph and that
docs/architecture.md holds exactly :func:`graph_table`'s output.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tap_rhttp"

#: Layers, bottom to top: a module may import only from its own layer or a lower one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("tap_rhttp", "tap_rhttp.types", "tap_rhttp.errors")),
    ("secrets", ("tap_rhttp.redact",)),
    ("expressions", ("tap_rhttp.expr",)),
    ("transport", ("tap_rhttp.http",)),
    ("bodies", ("tap_rhttp.formats",)),
    ("schemas", ("tap_rhttp.schema",)),
    ("config", ("tap_rhttp.config",)),
    ("paging", ("tap_rhttp.paging",)),
    ("run", ("tap_rhttp.run",)),
    ("apps", ("tap_rhttp.explain", "tap_rhttp.wizard")),
    (
        "sdk glue",
        (
            "tap_rhttp.sdk_imports",
            "tap_rhttp.sdk_compat",
            "tap_rhttp.writer",
            "tap_rhttp.streams",
            "tap_rhttp.tap",
            "tap_rhttp.main",
            "tap_rhttp.__main__",
        ),
    ),
)


@dataclasses.dataclass
class Module:
    """One module's imports of the package and of singer-sdk."""

    name: str
    runtime: set[str] = dataclasses.field(default_factory=set)
    type_only: set[str] = dataclasses.field(default_factory=set)
    local: set[str] = dataclasses.field(default_factory=set)
    sdk: bool = False  # imports singer_sdk (at any level)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int:
    """The index of a module's layer (the longest matching prefix)."""
    best, index = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    if index < 0:
        raise ValueError(f"module {name} is in no layer of scripts/import_graph.py")
    return index


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING") or (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.split(".")
        base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
    # `from tap_rhttp.run import graph` imports the module tap_rhttp.run.graph
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        path = ROOT / Path(*candidate.split("."))
        found.append(candidate if path.with_suffix(".py").exists() or path.is_dir() else base)
    return found


def read(path: Path) -> Module:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    module = Module(name)
    tree = ast.parse(path.read_text())

    def visit(nodes: list[ast.stmt], kind: str) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, package):
                    if target.split(".")[0] == "singer_sdk":
                        module.sdk = True
                    if target.split(".")[0] == "tap_rhttp" and target != name:
                        getattr(module, kind).add(target)
            elif isinstance(node, ast.If) and _is_type_checking(node) and kind == "runtime":
                visit(node.body, "type_only")
                visit(node.orelse, kind)
            elif isinstance(node, ast.Try) and kind == "runtime":
                visit(node.body, kind)
                for handler in node.handlers:
                    visit(handler.body, kind)
            else:
                for child in ast.walk(node):
                    if isinstance(child, (ast.Import, ast.ImportFrom)):
                        for target in _targets(child, package):
                            if target.split(".")[0] == "singer_sdk":
                                module.sdk = True
                            if target.split(".")[0] == "tap_rhttp":
                                module.local.add(target)

    visit(tree.body, "runtime")
    return module


def modules() -> dict[str, Module]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = read(path)
        found[module.name] = module
    return found


def _short(name: str) -> str:
    return name.removeprefix("tap_rhttp.") if name != "tap_rhttp" else "tap_rhttp"


def graph_table() -> str:
    """docs/architecture.md's module graph: every module, by layer, with its imports."""
    rows = [
        "| layer | module | imports (at run time) | imports (types only) |",
        "|---|---|---|---|",
    ]
    found = modules()
    for name in sorted(found, key=lambda n: (layer_of(n), n)):
        module = found[name]
        runtime = ", ".join(f"`{_short(m)}`" for m in sorted(module.runtime)) or "-"
        types = ", ".join(f"`{_short(m)}`" for m in sorted(module.type_only - module.runtime))
        sdk = " (+ singer-sdk)" if module.sdk else ""
        rows.append(
            f"| {LAYERS[layer_of(name)][0]} | `{_short(name)}`{sdk} | {runtime} | {types or '-'} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(graph_table())
