"""The command line as a user meets it: clear errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import typing as t

import pytest


@pytest.mark.parametrize("args", [(), ("--discover",)])
def test_config_errors_before_any_request(server: t.Any, cli: t.Any, args: tuple[str, ...]) -> None:
    config = {
        "streams": [
            {"name": "ok", "url": server.url + "/records"},
            {"name": "bad", "url": server.url + "/records", "paramz": {"a": 1}, "page_limit": 3},
        ]
    }
    done = cli(config, *args)
    assert done.code == 1
    assert "streams[1].paramz: unknown option `paramz`. Did you mean `params`?" in done.stderr
    assert "streams[1].page_limit: `page_limit` needs `page` too" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert server.log == []


def test_http_error_is_one_clear_line_and_exit_1(server: t.Any, cli: t.Any) -> None:
    config = {"streams": [{"name": "s", "url": server.url + "/status/404", "reattempts": 1}]}
    done = cli(config)
    assert done.code == 1
    assert (
        f"Error in HTTP GET of `{server.url}/status/404` [stream s, page 1]: status code 404."
        in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_run_emits_schema_record_state(server: t.Any, cli: t.Any) -> None:
    done = cli({"streams": [{"name": "s", "url": server.url + "/records?n=2"}]})
    assert done.code == 0, done.stderr
    kinds = [m["type"] for m in done.messages()]
    assert kinds[0] == "SCHEMA"
    assert kinds.count("RECORD") == 2
    assert kinds[-1] == "STATE"


def test_discover_prints_a_catalog(server: t.Any, cli: t.Any) -> None:
    done = cli(
        {"streams": [{"name": "s", "url": server.url + "/records?n=2", "primary_keys": ["id"]}]},
        "--discover",
    )
    assert done.code == 0, done.stderr
    catalog = json.loads(done.stdout)
    (entry,) = catalog["streams"]
    assert entry["tap_stream_id"] == "s"
    assert entry["key_properties"] == ["id"]
    assert entry["schema"]["properties"]["id"] == {"type": ["integer", "null"]}


def test_about_lists_the_stream_options(cli: t.Any) -> None:
    done = cli(None, "--about", "--format=json")
    assert done.code == 0, done.stderr
    about = json.loads(done.stdout)
    spec_props = about["settings"]["properties"]["streams"]["items"]["properties"]
    for option in (
        "url",
        "method",
        "params",
        "header",
        "data",
        "auth",
        "timeout",
        "reattempts",
        "redirects",
        "verify",
        "result_format",
        "page",
        "page_limit",
        "records_path",
    ):
        assert option in spec_props
    assert spec_props["auth"]["properties"]["pass"]["secret"] is True


def test_python_dash_m_and_console_script_agree(cli: t.Any) -> None:
    done = cli(None, "--version")
    assert done.code == 0
    assert "tap-rhttp" in done.stdout


def test_progress_line_at_the_end_of_each_stream(server: t.Any, cli: t.Any) -> None:
    config = {
        "streams": [
            {
                "name": "linked",
                "url": server.url + "/pages/link?per_page=2&total=5",
                "page": "link-next",
                "page_limit": -1,
            }
        ]
    }
    done = cli(config)
    assert done.code == 0, done.stderr
    import re

    line = re.search(
        r"stream linked done: (\d+) pages, (\d+) records, (\d+) retries, "
        r"(\d+) skipped, \d+ records/s, [\d.]+ s",
        done.stderr,
    )
    assert line is not None, done.stderr
    assert line.groups() == ("3", "5", "0", "0")


def test_about_marks_only_each_streams_name_and_url_as_required(cli: t.Any) -> None:
    """`defaults` holds optional values for every stream: nothing in it is required."""
    about = json.loads(cli(None, "--about", "--format=json").stdout)
    settings = about["settings"]
    assert settings["required"] == ["streams"]
    items = settings["properties"]["streams"]["items"]
    assert items["required"] == ["name", "url"]
    assert items["properties"]["url"]["description"].endswith("Required.")
    defaults = settings["properties"]["defaults"]
    assert "required" not in defaults
    assert "Required" not in defaults["properties"]["url"]["description"]
    assert "null" in defaults["properties"]["url"]["type"]

    markdown = cli(None, "--about", "--format=markdown").stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| defaults.")]
    assert rows
    assert not [row for row in rows if "Required" in row or "| True |" in row]


def test_no_env_var_notice_on_every_run(cli: t.Any) -> None:
    """singer-sdk's "Skipping parse of env var settings..." is DEBUG, not INFO noise."""
    config = {
        "streams": [{"name": "s", "url": "http://127.0.0.1:9/x", "schema": {"properties": {}}}]
    }
    done = cli(config, "--discover")
    assert done.code == 0, done.stderr
    assert "Skipping parse of env var settings" not in done.stderr
