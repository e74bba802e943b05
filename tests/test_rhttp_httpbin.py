"""RethinkDB's own r.http test cases, replayed against a local httpbin.

Each case mirrors one of ``test/rql_test/connections/r_http.*.httpbin`` in RethinkDB:
GET params, header object/array, HEAD, POST form/string, PUT/PATCH/DELETE
object/string, redirects 0/1/2, gzip, HTML read as json, basic and digest auth good and
bad, file:// refused, PNG read as binary, TLS verify on/off, and a timeout.
"""

from __future__ import annotations

import base64
import typing as t

import pytest
import pytest_httpbin.certs
from singer_sdk.exceptions import ConfigValidationError

from tap_rhttp.errors import (
    PermanentRequestError,
    ResponseFormatError,
    TransientRequestError,
)


def cfg(url: str, **spec: t.Any) -> dict[str, t.Any]:
    spec.setdefault("reattempts", 1)
    return {"streams": [{"name": "s", "url": url, **spec}]}


def only_record(sync: t.Callable[..., t.Any], config: dict[str, t.Any]) -> dict[str, t.Any]:
    (record,) = sync(config).records("s")
    return record


def test_get_with_params(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(
        sync, cfg(httpbin.url + "/get", params={"fake": 123, "fake2": "test", "empty": None})
    )
    assert record["args"] == {"fake": "123", "fake2": "test", "empty": ""}
    assert record["headers"]["User-Agent"].startswith("tap-rhttp/")
    assert "gzip" in record["headers"]["Accept-Encoding"]


@pytest.mark.parametrize(
    "header",
    [
        {"Test": "entry", "Accept": "text/plain"},
        ["Test: entry", "Accept: text/plain"],
    ],
    ids=["object", "array"],
)
def test_header_object_and_array(httpbin: t.Any, sync: t.Any, header: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/headers", header=header))
    assert record["headers"]["Test"] == "entry"
    assert record["headers"]["Accept"] == "text/plain"


def test_header_null_removes_a_default(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/headers", header={"User-Agent": None}))
    assert "User-Agent" not in record["headers"]


def test_head_yields_no_records(httpbin: t.Any, sync: t.Any) -> None:
    result = sync(cfg(httpbin.url + "/get", method="HEAD"))
    assert result.records("s") == []


def test_post_form_object(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(
        sync,
        cfg(httpbin.url + "/post", method="POST", data={"player": "Bob", "game": "tic tac toe"}),
    )
    assert record["form"] == {"player": "Bob", "game": "tic tac toe"}
    assert record["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_post_string_and_user_content_type_wins(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(
        sync,
        cfg(
            httpbin.url + "/post",
            method="POST",
            data='{"test": "data"}',
            header={"Content-Type": "application/json"},
        ),
    )
    assert record["json"] == {"test": "data"}
    assert record["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_put_patch_delete_object_as_json(httpbin: t.Any, sync: t.Any, method: str) -> None:
    record = only_record(
        sync, cfg(f"{httpbin.url}/{method.lower()}", method=method, data={"nested": {"a": [1, 2]}})
    )
    assert record["json"] == {"nested": {"a": [1, 2]}}
    assert record["data"] == '{"nested":{"a":[1,2]}}'  # compact
    assert record["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_put_patch_delete_string_as_is(httpbin: t.Any, sync: t.Any, method: str) -> None:
    record = only_record(
        sync, cfg(f"{httpbin.url}/{method.lower()}", method=method, data="raw text body")
    )
    # RethinkDB sends a string body of these methods in curl's upload mode, which adds no
    # Content-Type: the server gets the bytes unlabelled, never parsed as a form.
    assert record["data"] == "raw text body"
    assert record["form"] == {}
    assert "Content-Type" not in record["headers"]


def test_post_string_is_labelled_form_encoded(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/post", method="POST", data="a=1&b=two"))
    # libcurl labels POSTFIELDS `application/x-www-form-urlencoded`, and so does r.http.
    assert record["form"] == {"a": "1", "b": "two"}
    assert record["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_redirects_zero_turns_3xx_into_an_error(httpbin: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(httpbin.url + "/redirect/1", redirects=0))
    assert info.value.status == 302
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{httpbin.url}/redirect/1` [stream s, page 1]: status code 302."
    )


def test_redirects_one_follows_one_hop(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/redirect/1", redirects=1))
    assert record["url"].endswith("/get")


def test_redirects_too_many(httpbin: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(httpbin.url + "/redirect/2", redirects=1))
    assert "Number of redirects hit maximum amount" in str(info.value)


def test_redirects_two_hops(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/redirect/2", redirects=2))
    assert record["url"].endswith("/get")


def test_gzip_body(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/gzip"))
    assert record["gzipped"] is True


def test_html_read_as_json_is_a_parse_error(httpbin: t.Any, sync: t.Any) -> None:
    with pytest.raises(ResponseFormatError) as info:
        sync(cfg(httpbin.url + "/html", result_format="json"))
    # r.http's envelope, as for every request error: which request, then what went wrong
    assert str(info.value).startswith(
        f"Error in HTTP GET of `{httpbin.url}/html` [stream s, page 1]: "
        "failed to parse JSON response: "
    )


def test_html_read_auto_is_text(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/html"))
    assert record["value"].lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("kind", ["basic", "digest"])
def test_auth_good(httpbin: t.Any, sync: t.Any, kind: str) -> None:
    path = "basic-auth/fred/mxyzptlk" if kind == "basic" else "digest-auth/auth/fred/mxyzptlk"
    record = only_record(
        sync, cfg(f"{httpbin.url}/{path}", auth={"type": kind, "user": "fred", "pass": "mxyzptlk"})
    )
    assert record == {"authenticated": True, "user": "fred"}


@pytest.mark.parametrize("kind", ["basic", "digest"])
def test_auth_bad(httpbin: t.Any, sync: t.Any, kind: str) -> None:
    path = "basic-auth/fred/mxyzptlk" if kind == "basic" else "digest-auth/auth/fred/mxyzptlk"
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(f"{httpbin.url}/{path}", auth={"type": kind, "user": "fred", "pass": "wrong"}))
    assert info.value.status == 401
    assert "status code 401." in str(info.value)
    assert "wrong" not in str(info.value)


def test_auth_type_defaults_to_basic(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(
        sync,
        cfg(f"{httpbin.url}/basic-auth/fred/mxyzptlk", auth={"user": "fred", "pass": "mxyzptlk"}),
    )
    assert record["authenticated"] is True


def test_file_url_is_unsupported_protocol(sync: t.Any) -> None:
    with pytest.raises(ConfigValidationError) as info:
        sync(cfg("file:///etc/passwd"))
    assert any("Unsupported protocol" in e for e in info.value.errors)


def test_png_auto_is_binary_base64(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/image/png"))
    assert base64.b64decode(record["value"]).startswith(b"\x89PNG")


def test_tls_verify_on_rejects_self_signed(httpbin_secure: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(httpbin_secure.url + "/get", reattempts=3))
    assert "TLS error" in str(info.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verify_off_accepts_self_signed(httpbin_secure: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin_secure.url + "/get", verify=False))
    assert record["url"].startswith("https://")


def test_tls_verify_with_a_ca_bundle_path(httpbin_secure: t.Any, sync: t.Any) -> None:
    record = only_record(
        sync, cfg(httpbin_secure.url + "/get", verify=pytest_httpbin.certs.where())
    )
    assert record["url"].startswith("https://")


def test_tls_verify_honours_requests_ca_bundle(
    httpbin_secure: t.Any, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pytest_httpbin.certs.where())
    record = only_record(sync, cfg(httpbin_secure.url + "/get"))
    assert record["url"].startswith("https://")


def test_timeout_on_a_delayed_endpoint(httpbin: t.Any, sync: t.Any) -> None:
    with pytest.raises(TransientRequestError) as info:
        sync(cfg(httpbin.url + "/delay/5", timeout=0.8))
    assert (
        str(info.value) == f"Error in HTTP GET of `{httpbin.url}/delay/5` [stream s, page 1]: "
        "timed out after 0.800 seconds."
    )


def test_cookies_kept_across_redirects(httpbin: t.Any, sync: t.Any) -> None:
    record = only_record(sync, cfg(httpbin.url + "/cookies/set?flavour=oat", redirects=1))
    assert record == {"cookies": {"flavour": "oat"}}


def test_status_404_envelope_has_header_and_body(httpbin: t.Any, sync: t.Any) -> None:
    with pytest.raises(PermanentRequestError) as info:
        sync(cfg(httpbin.url + "/status/404"))
    text = str(info.value)
    assert text.startswith(
        f"Error in HTTP GET of `{httpbin.url}/status/404` [stream s, page 1]: status code 404.\n"
    )
    assert "\nheader:\n" in text
    assert "Content-Type" in text or "content-type" in text.lower()
