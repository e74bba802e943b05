"""The package's layering holds, and docs/architecture.md draws the real import graph."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from import_graph import LAYERS, graph_table, layer_of, modules  # noqa: E402

GLUE = LAYERS.index(next(layer for layer in LAYERS if layer[0] == "sdk glue"))
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, module in modules().items()
        for target in module.runtime | module.type_only
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_only_the_sdk_glue_imports_singer_sdk() -> None:
    core = [name for name, module in modules().items() if module.sdk and layer_of(name) < GLUE]
    assert not core, f"modules below the SDK glue that import singer_sdk: {core}"
    assert any(module.sdk for module in modules().values())  # the check sees SDK imports


def test_no_function_level_imports_of_the_package() -> None:
    local = {name: sorted(m.local) for name, m in modules().items() if m.local}
    assert not local, f"imports inside functions (a cycle being broken?): {local}"


def test_no_import_cycles() -> None:
    graph = {name: module.runtime for name, module in modules().items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph.get(name, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif state.get(target) is None:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_the_graph_sees_every_module_and_its_edges() -> None:
    found = modules()
    assert "tap_rhttp.run.context" in found
    assert "tap_rhttp.run.chain" in found["tap_rhttp.run.context"].runtime
    assert "tap_rhttp.config.spec" in found["tap_rhttp.run.chain"].type_only


def test_docs_architecture_holds_the_real_import_graph() -> None:
    start = "<!-- import-graph:start -->\n"
    end = "<!-- import-graph:end -->"
    assert start in ARCHITECTURE
    assert end in ARCHITECTURE
    drawn = ARCHITECTURE.split(start, 1)[1].split(end, 1)[0].strip()
    assert drawn == graph_table(), "run: .venv/bin/python scripts/sync_readme.py"
