"""The shape of ``tap_rhttp.expr``: its public API, its import graph, its one table."""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys
import typing as t

import pytest

from tap_rhttp import expr
from tap_rhttp.expr.functions import _METHODS, _R_FUNCTIONS

PACKAGE = pathlib.Path(expr.__file__).resolve().parent
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def _package_imports(module: str) -> set[str]:
    """The sibling modules ``module`` imports, at any level of the file."""
    found = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tap_rhttp.expr."):
            found.add(t.cast("str", node.module).removeprefix("tap_rhttp.expr."))
    return found


def test_the_public_api_is_small() -> None:
    assert sorted(expr.__all__) == sorted(
        [
            "Expression",
            "compile_expression",
            "reql_type_name",
            *(name for name in dir(expr) if name.startswith("MAX_")),
        ]
    )
    assert all(hasattr(expr, name) for name in expr.__all__)
    assert "docs/expressions.md" in (expr.__doc__ or "")


def test_the_modules_import_each_other_without_a_cycle() -> None:
    graph = {module: _package_imports(module) for module in MODULES}
    assert set().union(*graph.values()) <= set(MODULES)
    done: set[str] = set()
    for start in MODULES:
        path = [start]
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path.pop())
                continue
            assert following not in path, f"import cycle: {' -> '.join([*path, following])}"
            if following not in done:
                path.append(following)
                stack.append(iter(sorted(graph[following])))


def test_no_import_hides_inside_a_function() -> None:
    for module in MODULES:
        for node in ast.walk(_tree(module)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
                assert not inner, f"{module}.{node.name} imports at call time"


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import tap_rhttp.expr.{module}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=PACKAGE.parent.parent,
    )
    assert done.returncode == 0, done.stderr


def test_the_json_alias_is_defined_once() -> None:
    owners = []
    for module in MODULES:
        for node in _tree(module).body:
            targets = (
                [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            )
            if any(isinstance(target, ast.Name) and target.id == "JSON" for target in targets):
                owners.append(module)
    assert owners == ["values"]


def _accepts(fn: t.Callable[..., t.Any], count: int) -> bool:
    try:
        inspect.signature(fn).bind(*range(count))
    except TypeError:
        return False
    return True


@pytest.mark.parametrize(
    ("label", "entry", "receiver"),
    [(f".{name}", entry, 1) for name, entry in _METHODS.items()]
    + [(f"r.{name}", entry, 0) for name, entry in _R_FUNCTIONS.items()],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_each_table_entry_agrees_with_its_implementation(
    label: str, entry: t.Any, receiver: int
) -> None:
    if entry.lazy:
        assert list(inspect.signature(entry.fn).parameters)[:3] == ["ev", "receiver", "args"]
        return
    # The table is the one record of arity (the checker enforces it); the implementation
    # must take every count the table allows.
    low, high = entry.min_args, entry.max_args
    for count in range(low, (low + 5 if high is None else high) + 1):
        assert _accepts(entry.fn, receiver + count), f"{label} with {count} arguments"
    parameters = list(inspect.signature(entry.fn).parameters)
    for index, keyword in enumerate(entry.keywords):
        assert parameters[receiver + index] == keyword, label


def test_r_spellings_of_methods_take_the_receiver_first() -> None:
    for name in ("add", "sub", "mul", "div", "mod", "eq", "ne", "lt", "le", "gt", "ge", "not_"):
        method, function = _METHODS[name], _R_FUNCTIONS[name]
        assert function.min_args == method.min_args + 1
        assert function.max_args == (None if method.max_args is None else method.max_args + 1)
