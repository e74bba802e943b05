"""singer-sdk imported without joblib and universal_pathlib (``tap_rhttp.sdk_imports``).

The deferral is only sound while singer-sdk takes exactly the listed names from those
libraries at import time and only ever calls them; these tests fail, naming the module
and the name, when an SDK upgrade changes that.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import singer_sdk

from tap_rhttp.sdk_imports import DEFERRED

if t.TYPE_CHECKING:
    from server import LocalServer

SDK = Path(singer_sdk.__file__).resolve().parent


def run_python(code: str) -> str:
    """`code` in a fresh interpreter (singer-sdk not imported yet); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def _module_level_imports(tree: ast.Module, library: str) -> list[ast.ImportFrom | ast.Import]:
    found: list[ast.ImportFrom | ast.Import] = []
    for node in tree.body:  # what runs at import time (not under TYPE_CHECKING or in a def)
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        if any(module.split(".")[0] == library for module in modules):
            found.append(node)
    return found


def _non_call_uses(tree: ast.Module, name: str) -> list[int]:
    """Lines where `name` is used other than called (annotations are strings there)."""
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    annotations = {
        id(sub)
        for node in ast.walk(tree)
        for annotation in _annotations(node)
        for sub in ast.walk(annotation)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and node.id == name
        and id(node) not in called
        and id(node) not in annotations
    ]


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
        found: list[ast.AST] = [a.annotation for a in args if a.annotation is not None]
        return found + ([node.returns] if node.returns is not None else [])
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    return []


def test_the_sdk_takes_only_the_listed_names_and_only_calls_them() -> None:
    seen: dict[str, set[str]] = {library: set() for library in DEFERRED}
    for path in sorted(SDK.rglob("*.py")):
        if "contrib" in path.parts or "testing" in path.parts:
            continue  # imported by a user's choice, never by ``import singer_sdk``
        source = path.read_text()
        tree = ast.parse(source)
        future = any(
            isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body
        )
        for library, names in DEFERRED.items():
            for node in _module_level_imports(tree, library):
                where = f"{path.relative_to(SDK)}:{node.lineno}"
                assert isinstance(node, ast.ImportFrom), f"{where} imports {library} whole"
                assert node.module == library, f"{where} imports from {node.module}"
                for alias in node.names:
                    assert alias.name in names, f"{where} takes {alias.name}, not deferred"
                    assert alias.asname is None, f"{where} renames {alias.name}"
                    assert future, f"{where}: annotations would be evaluated"
                    uses = _non_call_uses(tree, alias.name)
                    assert not uses, f"{path.relative_to(SDK)} uses {alias.name} at lines {uses}"
                    seen[library].add(alias.name)
    assert seen == {library: set(names) for library, names in DEFERRED.items()}


def test_the_command_starts_without_them_and_later_imports_get_the_real_libraries() -> None:
    out = run_python(
        "import sys, json\n"
        "import tap_rhttp.main\n"
        "from singer_sdk import target_base\n"
        "from singer_sdk.helpers import _batch\n"
        "loaded = [m for m in ('joblib', 'upath', 'fsspec') if m in sys.modules]\n"
        "deferred = [repr(_batch.UPath), repr(target_base.Parallel)]\n"
        "import upath, joblib\n"
        "real = [upath.UPath is _batch.UPath.resolve(), joblib.delayed is "
        "target_base.delayed.resolve(), isinstance(upath.UPath, type)]\n"
        "print(json.dumps([loaded, deferred, real]))\n"
    )
    loaded, deferred, real = json.loads(out)
    assert loaded == []
    assert deferred == ["<deferred upath.UPath>", "<deferred joblib.Parallel>"]
    assert real == [True, True, True]


def test_nothing_is_deferred_once_singer_sdk_is_imported() -> None:
    out = run_python(
        "import singer_sdk\n"
        "from tap_rhttp import sdk_imports\n"
        "sdk_imports.import_singer_sdk()\n"
        "from singer_sdk.helpers import _batch\n"
        "import upath\n"
        "print(_batch.UPath is upath.UPath)\n"
    )
    assert out.strip() == "True"


def test_batch_files_are_written_through_the_deferred_upath(
    server: LocalServer, tmp_path: Path
) -> None:
    """The command (``python -m tap_rhttp``) writes BATCH files: UPath is called."""
    root = tmp_path / "batches"
    root.mkdir()
    config = {
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{root}", "prefix": "b-"},
            "batch_size": 4,
        },
        "streams": [{"name": "s", "url": server.url + "/records?n=10"}],
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "tap_rhttp", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if "PROXY" not in k.upper()},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    manifest = [url for m in messages if m["type"] == "BATCH" for url in m["manifest"]]
    assert len(manifest) == 3
    ids: list[t.Any] = []
    for url in manifest:
        with gzip.open(urlsplit(url).path, "rt") as handle:
            ids += [json.loads(line)["id"] for line in handle]
    assert sorted(ids) == list(range(1, 11))
    assert not [m for m in messages if m["type"] == "RECORD"]
