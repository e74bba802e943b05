"""Every recipe in docs/cookbook.md, run as written against a local API of the same shape.

The specs are read from the cookbook's ```json blocks, so the page cannot drift from what
is tested: a block without a case here fails, and so does a case without a block. Only the
scheme and host of each URL are changed, to the loopback server's.
"""

from __future__ import annotations

import json
import re
import sys
import typing as t
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from pagination_server import TOTAL, install

if t.TYPE_CHECKING:
    from server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
COOKBOOK = ROOT / "docs" / "cookbook.md"
README = ROOT / "README.md"
_JSON_BLOCK = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
# a recipe: its json block, then (after one blank line) its yaml block
_RECIPE = re.compile(
    r"^```json[ \t]*\n(.*?)^```[ \t]*\n(?:\n```yaml\n(.*?)^```[ \t]*$)?", re.S | re.M
)
sys.path.insert(0, str(ROOT / "scripts"))

from sync_readme import cookbook_yaml  # noqa: E402


def recipes() -> dict[str, dict[str, t.Any]]:
    """The cookbook's stream specs, by stream name."""
    specs = [json.loads(block) for block in _JSON_BLOCK.findall(COOKBOOK.read_text())]
    by_name = {spec["name"]: spec for spec in specs}
    assert len(by_name) == len(specs), "two cookbook recipes share a stream name"
    return by_name


def ids(prefix: str = "", offset: int = 0) -> list[t.Any]:
    return [f"{prefix}{i}" if prefix else offset + i for i in range(1, TOTAL + 1)]


# stream name -> (the primary keys of every record, in order; every target the server saw)
CASES: dict[str, tuple[list[t.Any], list[str]]] = {
    "issues": (
        ids(offset=1000),
        [
            "/repos/octocat/hello-world/issues?per_page=2&state=all",
            "/repositories/1296269/issues?per_page=2&state=all&page=2",
            "/repositories/1296269/issues?per_page=2&state=all&page=3",
        ],
    ),
    "orders": (
        ids(),
        [
            "/api/orders/?page_size=2",
            "/api/orders/?page_size=2&page=2",
            "/api/orders/?page_size=2&page=3",
        ],
    ),
    "events": (
        ids("evt_"),
        [
            "/v1/events?limit=2",
            "/v1/events?cursor=YWZ0ZXI6Mg&limit=2",
            "/v1/events?cursor=YWZ0ZXI6NA&limit=2",
        ],
    ),
    "tickets": (
        ids(),
        [f"/api/v2/tickets?page={n}&per_page=2" for n in (1, 2, 3, 4)],  # 4 is empty
    ),
    "tickets_short_page": (
        ids(),
        [f"/api/v2/tickets?page={n}&per_page=2" for n in (1, 2, 3)],
    ),
    "contacts": (
        ids(),
        [f"/v3/contacts?limit=2&offset={n}" for n in (0, 2, 4)],
    ),
    "customers": (
        ids("cus_"),
        [
            "/v1/customers?limit=2",
            "/v1/customers?limit=2&starting_after=cus_2",
            "/v1/customers?limit=2&starting_after=cus_4",
        ],
    ),
}


def test_every_recipe_has_a_case_and_every_case_a_recipe() -> None:
    assert sorted(recipes()) == sorted(CASES)


def test_the_cookbook_covers_the_common_shapes() -> None:
    """GitHub Link headers, a body next URL, cursors, page numbers, offset/total, has_more."""
    pages = {name: spec["page"] for name, spec in recipes().items()}
    assert pages["issues"] == "link-next"
    assert pages["orders"] == "info['body']['next']"
    assert "next_cursor" in pages["events"]
    assert "info['body'].count() == 0" in pages["tickets"]
    assert "['total']" in pages["contacts"]
    assert "['has_more']" in pages["customers"]
    assert all(spec["page_limit"] == -1 for spec in recipes().values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe(server: LocalServer, sync: t.Any, name: str) -> None:
    install(server)
    spec = dict(recipes()[name])
    local = urlsplit(server.url)
    spec["url"] = urlunsplit(
        urlsplit(spec["url"])._replace(scheme=local.scheme, netloc=local.netloc)
    )
    expected_keys, expected_targets = CASES[name]

    records = sync({"streams": [spec]}).records(name)

    (key,) = spec["primary_keys"]
    assert [record[key] for record in records] == expected_keys  # each exactly once, in order
    assert [request.target for request in server.log] == expected_targets


@pytest.mark.parametrize("page", [COOKBOOK, README], ids=["docs/cookbook.md", "README.md"])
def test_every_recipe_is_also_yaml_that_reads_back_the_same(page: Path) -> None:
    """Pasted into meltano.yml as shown, each recipe is the config its JSON is."""
    text = page.read_text()
    if page == README:  # only the generated cookbook section
        text = text.split("<!-- cookbook:start -->", 1)[1].split("<!-- cookbook:end -->", 1)[0]
    pairs = _RECIPE.findall(text)
    assert len(pairs) == len(CASES)
    for json_text, yaml_text in pairs:
        spec = json.loads(json_text)
        assert yaml_text, f"no YAML after the {spec['name']} recipe"
        assert yaml.safe_load(yaml_text) == {"streams": [spec]}, spec["name"]
        assert "page: '" in yaml_text or 'page: "' in yaml_text  # quoted, never plain


def test_the_yaml_blocks_are_generated_from_the_json_ones() -> None:
    text = COOKBOOK.read_text()
    assert cookbook_yaml(text) == text, "run: .venv/bin/python scripts/sync_readme.py"


def test_an_unquoted_expression_is_what_breaks_yaml() -> None:
    """Why the YAML blocks quote: the same recipe written plain is not YAML at all."""
    page = recipes()["tickets"]["page"]
    with pytest.raises(yaml.YAMLError, match="mapping values are not allowed here"):
        yaml.safe_load(f"page: {page}")
