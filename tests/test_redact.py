"""Secrets never leave the process: URLs, headers, free text, JSON values and logs."""

from __future__ import annotations

import base64
import logging
import typing as t

import pytest

from tap_rhttp.redact import (
    MASK,
    SENSITIVE_HEADERS,
    SENSITIVE_QUERY_KEYS,
    RedactingFilter,
    Redactor,
)

SECRET = "s3cr3t/t0k+en&more"  # has characters that percent-encoding changes


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor([SECRET], secret_headers=["X-Tenant"], secret_params=["tenant_pin"])
    r.add_basic_credentials("alice", "open sesame!")
    return r


# -- url --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(SENSITIVE_QUERY_KEYS))
def test_url_masks_each_sensitive_query_key(key: str) -> None:
    url = f"https://api.example.com/v1/items?q=a%20b&{key}=abc123&after=2024-01-01T00:00:00Z"
    assert Redactor().url(url) == (
        f"https://api.example.com/v1/items?q=a%20b&{key}={MASK}&after=2024-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    "key",
    [
        "TOKEN",
        "Api_Key",
        "accessToken",
        "clientSecret",
        "X-Amz-Signature",
        "my_token",
        "github-token",
        "stripe_key",
        "app-key",
        "hmac_secret",
        "tenant_pin",  # registered via secret_params
        "api%5Fkey",  # percent-encoded key name
        "githubToken",
        "dbPassword",
    ],
)
def test_url_masks_keys_case_insensitively_and_by_suffix(redactor: Redactor, key: str) -> None:
    assert redactor.url(f"/x?{key}=v4lue&a=1") == f"/x?{key}={MASK}&a=1"


def test_url_keeps_everything_else_byte_for_byte() -> None:
    url = (
        "https://user@api.example.com:8443/a%20b/c,d:e;f?"
        "q=a%20b&list=1,2,3&time=12:30&x=1&x=2&plus=a+b&empty=&bare&q=&"
        "page_token=abc&sort_key=name&token=t1&token=t2#frag"
    )
    expected = url.replace("token=t1&token=t2", f"token={MASK}&token={MASK}")
    assert Redactor().url(url) == expected


@pytest.mark.parametrize(
    "key",
    [
        "page_token",
        "pageToken",
        "nextPageToken",
        "continuation_token",
        "sort_key",
        "monkey",
        "tokens",
    ],
)
def test_url_keeps_pagination_and_ordinary_keys(key: str) -> None:
    assert Redactor().url(f"/x?{key}=v4lue") == f"/x?{key}=v4lue"


def test_url_without_secrets_is_unchanged() -> None:
    url = "http://h/p?a=%2F&b=%2f&c=+&d=%7E~#x=y"
    assert Redactor([SECRET]).url(url) == url


def test_url_masks_userinfo_password_only(redactor: Redactor) -> None:
    assert (
        redactor.url("https://alice:pw@h.example/p?a=1") == f"https://alice:{MASK}@h.example/p?a=1"
    )
    # a password containing '@' (unencoded) is masked whole
    assert redactor.url("ftp://bob:p@ss@h/") == f"ftp://bob:{MASK}@h/"
    # no password, or an '@' outside the authority: nothing to mask
    assert redactor.url("https://alice@h.example/") == "https://alice@h.example/"
    assert redactor.url("https://h.example/@me?x=a:b@c") == "https://h.example/@me?x=a:b@c"


def test_url_masks_token_in_fragment() -> None:
    assert Redactor().url("https://app/cb#access_token=xyz&state=1") == (
        f"https://app/cb#access_token={MASK}&state=1"
    )


def test_url_masks_literal_secret_anywhere(redactor: Redactor) -> None:
    from urllib.parse import quote

    url = f"https://h/{quote(SECRET, safe='')}/x?unrelated={quote(SECRET)}"
    out = redactor.url(url)
    assert out == f"https://h/{MASK}/x?unrelated={MASK}"


# -- text -------------------------------------------------------------------------------


def test_text_catches_url_encoded_secret_echoed_in_html_error_body(redactor: Redactor) -> None:
    from urllib.parse import quote, quote_plus

    body = (
        "<html><body><h1>400 Bad Request</h1>"
        f'<p>Could not fetch <a href="https://h/x?s={quote(SECRET, safe="")}'
        f'&amp;other={quote_plus(SECRET)}">the URL</a></p>'
        f"<pre>{quote(SECRET, safe='').lower()}</pre></body></html>"
    )
    out = redactor.text(body)
    for form in (
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        quote(SECRET, safe="").lower(),
    ):
        assert form not in out
    assert out.count(MASK) == 3
    assert out.startswith("<html><body><h1>400 Bad Request</h1>")


def test_text_masks_basic_credentials(redactor: Redactor) -> None:
    token = base64.b64encode(b"alice:open sesame!").decode()
    out = redactor.text(f"sent {token} and open sesame! and open%20sesame%21")
    assert token not in out
    assert "open sesame!" not in out
    assert "open%20sesame%21" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /x?token=abc&page=2 failed", f"GET /x?token={MASK}&page=2 failed"),
        ('password="hunter 2" user=bob', f'password="{MASK}" user=bob'),
        ("Cookie: session=abc; theme=dark", f"Cookie: {MASK}"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", f"Authorization: Bearer {MASK}"),
        ("  x-my-token: zzz", f"  x-my-token: {MASK}"),
        ("proxy-authorization:Basic Zm9vOmJhcg==", f"proxy-authorization:Basic {MASK}"),
        (
            '{"access_token": "abc", "expires_in": 3600}',
            f'{{"access_token": "{MASK}", "expires_in": 3600}}',
        ),
        ("{'api_key': 'abc', 'n': 'x'}", f"{{'api_key': '{MASK}', 'n': 'x'}}"),
        (
            '{"detail": "{\\"client_secret\\": \\"abc\\"}"}',
            f'{{"detail": "{{\\"client_secret\\": \\"{MASK}\\"}}"}}',
        ),
        (
            '{"code": "rate_limited", "message": "slow down"}',
            '{"code": "rate_limited", "message": "slow down"}',
        ),
        ("proxy http://bob:pa55@proxy:3128 refused", f"proxy http://bob:{MASK}@proxy:3128 refused"),
        ("mail bob@example.com at 10:00", "mail bob@example.com at 10:00"),
        ("invalid token: expired at 12:00", "invalid token: expired at 12:00"),
        ("status code: 404, ratio=0.5", "status code: 404, ratio=0.5"),
    ],
)
def test_text_patterns(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_text_is_idempotent(redactor: Redactor) -> None:
    once = redactor.text(f"token={SECRET} Authorization: Basic abcdef")
    assert redactor.text(once) == once


def test_short_secrets_are_not_masked_in_free_text_but_are_structurally() -> None:
    r = Redactor(["ab", ""])
    assert r.text("a cab for abby") == "a cab for abby"
    assert r.url("https://u:ab@h/?token=ab&x=ab") == f"https://u:{MASK}@h/?token={MASK}&x=ab"
    assert r.headers({"Authorization": "ab"}) == {"Authorization": MASK}


def test_longest_secret_wins() -> None:
    r = Redactor(["abcd", "abcdefgh"])
    assert r.text("xxabcdefghyy abcdzz") == f"xx{MASK}yy {MASK}zz"


def test_secrets_added_later_are_picked_up() -> None:
    r = Redactor()
    assert r.text("hello w0rld-secret") == "hello w0rld-secret"
    r.add_secret("w0rld-secret")
    assert r.text("hello w0rld-secret") == f"hello {MASK}"


def test_repr_does_not_show_secrets(redactor: Redactor) -> None:
    assert SECRET not in repr(redactor)


# -- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SENSITIVE_HEADERS))
def test_headers_mask_each_sensitive_header_case_insensitively(name: str) -> None:
    r = Redactor()
    for spelling in (name, name.upper(), name.title()):
        assert r.headers({spelling: "v4lue", "Accept": "application/json"}) == {
            spelling: MASK,
            "Accept": "application/json",
        }


def test_headers_keep_auth_scheme_and_mask_by_substring(redactor: Redactor) -> None:
    out = redactor.headers(
        [
            ("AUTHORIZATION", "Bearer abc.def"),
            ("Authorization-Raw", "rawtoken"),
            ("X-GitHub-Token", "ghp_x"),
            ("X-Client-Secret", "cs"),
            ("X-Tenant", "acme"),  # registered via secret_headers
            ("Link", "<https://h/?page=2&access_token=abc>; rel=next"),
            ("X-Echo", f"you sent {SECRET}"),
            ("Set-Cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]
    )
    assert out == {
        "AUTHORIZATION": f"Bearer {MASK}",
        "Authorization-Raw": "rawtoken",  # not a sensitive name: left alone
        "X-GitHub-Token": MASK,
        "X-Client-Secret": MASK,
        "X-Tenant": MASK,
        "Link": f"<https://h/?page=2&access_token={MASK}>; rel=next",
        "X-Echo": f"you sent {MASK}",
        "Set-Cookie": f"{MASK}, {MASK}",
    }


def test_headers_mask_unknown_scheme_entirely() -> None:
    assert Redactor().headers({"Authorization": "sk_live_abc def"}) == {"Authorization": MASK}


# -- value ------------------------------------------------------------------------------


def test_value_walks_json(redactor: Redactor) -> None:
    doc: dict[str, t.Any] = {
        "url": f"https://h/?api_key=k&q={SECRET}",
        "config": {
            "auth": {"user": "alice", "password": "pw", "apiKey": 12345},
            "Authorization": ["Bearer a", "Bearer b"],
            "client_secret": None,
            "refresh_token": "",
            "use_token": True,
            "headers": {"X-Api-Key": "abc", "Accept": "*/*"},
        },
        "items": [{"id": 1, "note": f"contains {SECRET}"}, "token=abc", 3.5, None],
        "code": "E42",
        "page_token": "cursor-1",
        "usage": {"total_tokens": 17, "x-token-expiry": 60},
    }
    out = redactor.value(doc)
    assert out == {
        "url": f"https://h/?api_key={MASK}&q={MASK}",
        "config": {
            "auth": {"user": "alice", "password": MASK, "apiKey": MASK},
            "Authorization": [MASK, MASK],
            "client_secret": None,
            "refresh_token": "",
            "use_token": True,
            "headers": {"X-Api-Key": MASK, "Accept": "*/*"},
        },
        "items": [{"id": 1, "note": f"contains {MASK}"}, f"token={MASK}", 3.5, None],
        "code": "E42",
        "page_token": "cursor-1",
        "usage": {"total_tokens": 17, "x-token-expiry": 60},
    }
    # a copy: the input is untouched
    assert doc["config"]["auth"]["password"] == "pw"


# -- logging ----------------------------------------------------------------------------


def test_logging_filter_removes_planted_secret_everywhere(
    redactor: Redactor, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    from urllib.parse import quote

    logger = logging.getLogger("tap_rhttp.test_redact")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger.addHandler(handler)
    try:
        logger.info("GET %s", f"https://h/?key={quote(SECRET)}")
        logger.warning("retrying with %(tok)s", {"tok": SECRET})
        logger.error("odd format %d", SECRET)  # a broken format string must not leak
        try:
            raise RuntimeError(f"server said: {SECRET}")
        except RuntimeError:
            logger.exception("request failed for %s", SECRET)
        logger.info("stack", stack_info=True, extra={"unused": 1})
    finally:
        logger.removeHandler(handler)

    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: server said: " + MASK in output
    assert "GET https://h/?key=" + MASK in output
    for form in (SECRET, quote(SECRET), quote(SECRET, safe="")):
        assert form not in output


def test_logging_filter_with_caplog_records(
    redactor: Redactor, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tap_rhttp.test_redact.caplog")
    caplog.handler.addFilter(RedactingFilter(redactor))
    with caplog.at_level(logging.INFO, logger=logger.name):
        try:
            raise ValueError(SECRET)
        except ValueError:
            logger.exception("boom %s", SECRET)
    assert SECRET not in caplog.text
    assert caplog.records[0].getMessage() == f"boom {MASK}"
    assert "ValueError: " + MASK in caplog.text
