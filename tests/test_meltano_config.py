"""Where streams go in meltano.yml, checked with the real meltano CLI.

- The YAML ``tap-rhttp init`` prints, put into the tap-rhttp extractor's ``config:``, is
  what Meltano reads back (``meltano config print tap-rhttp``): quoting, JSONPaths with
  ``$`` and ``{{ secrets[...] }}`` references survive Meltano's own parsing and its
  environment-variable expansion.
- Streams in an environment's block are not shown by a plain ``meltano config print``
  (Meltano ignores the default environment for ``config``), only with
  ``--environment=NAME``: the README tells users so, and this pins it for meltano 4.4.1.

Each test runs meltano on a copy of the repo's meltano.yml in a temporary project
(``MELTANO_PROJECT_ROOT``), so nothing of the repo's own project is touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from meltano_cli import meltano_bin
from pagination_server import install

from tap_rhttp.wizard.command import init_command

if t.TYPE_CHECKING:
    from server import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[1]
LEAKY_PREFIXES = ("MELTANO_", "TAP_RHTTP_", "TARGET_POSTGRES_")

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e, pytest.mark.meltano]


def _project(tmp_path: Path, edit: t.Callable[[dict[str, t.Any]], None]) -> Path:
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text())
    project.pop("project_id", None)
    edit(project)
    root = tmp_path / "project"
    root.mkdir()
    (root / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    return root


def _tap(project: dict[str, t.Any]) -> dict[str, t.Any]:
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-rhttp"]
    return t.cast("dict[str, t.Any]", plugin)


def _config_print(root: Path, *args: str) -> dict[str, t.Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    env["MELTANO_PROJECT_ROOT"] = str(root)
    proc = subprocess.run(
        [meltano_bin(), *args, "config", "print", "tap-rhttp"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return t.cast("dict[str, t.Any]", json.loads(proc.stdout))


def test_the_yaml_init_prints_is_what_meltano_reads(server: LocalServer, tmp_path: Path) -> None:
    install(server)
    result = CliRunner().invoke(
        init_command,
        [server.url + "/v1/events", "--param", "limit=2", "--bearer", "tok-9c8b7a6d5e"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    sections = {
        part.split("\n", 1)[0]: part.split("\n", 1)[1]
        for part in re.split(r"^== ", result.stdout, flags=re.M)[1:]
    }
    (json_text,) = [v for k, v in sections.items() if k.startswith("The stream spec as JSON")]
    (yaml_text,) = [v for k, v in sections.items() if k.startswith("The same in meltano.yml")]
    spec = json.loads(json_text)
    printed = yaml.safe_load(yaml_text)
    assert "$" in spec["records_path"]
    assert spec["auth"]["token"] == "{{ secrets['token'] }}"

    def paste(project: dict[str, t.Any]) -> None:
        _tap(project)["config"] = _tap(printed)["config"]

    seen = _config_print(_project(tmp_path, paste))
    assert seen["streams"] == [spec]


def test_streams_in_an_environment_show_only_with_environment(tmp_path: Path) -> None:
    spec = {"name": "orders", "url": "http://127.0.0.1:9/orders", "page": "link-next"}

    def in_dev(project: dict[str, t.Any]) -> None:
        (dev,) = [e for e in project["environments"] if e["name"] == "dev"]
        dev["config"] = {
            "plugins": {"extractors": [{"name": "tap-rhttp", "config": {"streams": [spec]}}]}
        }

    root = _project(tmp_path, in_dev)
    assert "streams" not in _config_print(root)  # the plain command ignores `dev`
    assert _config_print(root, "--environment=dev")["streams"] == [spec]
