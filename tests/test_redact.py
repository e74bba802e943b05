"""Secrets never leave the process: URLs, headers, free text, JSON values and logs."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import time
import typing as t
from urllib.parse import unquote, unquote_plus

import pytest

from tap_rhttp.redact import (
    CREDENTIAL_HEADERS,
    CREDENTIAL_KEYS,
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
def test_url_masks_each_secret_looking_query_key_the_config_gave_a_value(key: str) -> None:
    """A literal the config writes under a secret-looking name is a secret, even short."""
    redactor = Redactor()
    redactor.add_url_secrets(f"https://api.example.com/v1/items?{key}=ab1")
    url = f"https://api.example.com/v1/items?q=a%20b&{key}=ab1&after=2024-01-01T00:00:00Z"
    assert redactor.url(url) == (
        f"https://api.example.com/v1/items?q=a%20b&{key}={MASK}&after=2024-01-01T00:00:00Z"
    )


@pytest.mark.parametrize("key", sorted(CREDENTIAL_KEYS))
def test_url_masks_each_credential_key_whoever_sent_it(key: str) -> None:
    url = f"https://api.example.com/v1/items?q=a%20b&{key}=abc123&after=2024-01-01T00:00:00Z"
    assert Redactor().url(url) == (
        f"https://api.example.com/v1/items?q=a%20b&{key}={MASK}&after=2024-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    "key",
    [
        *sorted(SENSITIVE_QUERY_KEYS - CREDENTIAL_KEYS),
        "pagination_token",
        "$skiptoken",
        "syncToken",
        "resumptionToken",
        "start_key",
    ],
)
def test_url_shows_a_param_whose_value_is_no_known_secret(key: str) -> None:
    """A name that only looks secret-ish is not masked: its value is the server's data."""
    url = f"https://api.example.com/v1/items?{key}=503&page=2"
    assert Redactor(["s3cr3t-value"]).url(url) == url


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
    redactor.add_url_secrets(f"/x?{key}=v4")  # the config wrote a (short) literal under it
    assert redactor.url(f"/x?{key}=v4&a=1") == f"/x?{key}={MASK}&a=1"
    assert redactor.url(f"/x?{key}=another&a=1") == f"/x?{key}={MASK}&a=1"


def test_url_keeps_everything_else_byte_for_byte() -> None:
    url = (
        "https://user@api.example.com:8443/a%20b/c,d:e;f?"
        "q=a%20b&list=1,2,3&time=12:30&x=1&x=2&plus=a+b&empty=&bare&q=&"
        "page_token=abc&sort_key=name&access_token=t1&access_token=t2#frag"
    )
    expected = url.replace("token=t1&access_token=t2", f"token={MASK}&access_token={MASK}")
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
        ("GET /x?access_token=abc&page=2 failed", f"GET /x?access_token={MASK}&page=2 failed"),
        ("GET /x?token=abc&code=503 failed", "GET /x?token=abc&code=503 failed"),
        ('password="hunter 2" user=bob', f'password="{MASK}" user=bob'),
        ("Cookie: session=abc; theme=dark", f"Cookie: {MASK}"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", f"Authorization: Bearer {MASK}"),
        ("  x-my-token: zzz", "  x-my-token: zzz"),  # a server's header, named like a token
        ("proxy-authorization:Basic Zm9vOmJhcg==", f"proxy-authorization:Basic {MASK}"),
        (
            '{"access_token": "abc", "expires_in": 3600}',
            f'{{"access_token": "{MASK}", "expires_in": 3600}}',
        ),
        ("{'client_secret': 'abc', 'n': 'x'}", f"{{'client_secret': '{MASK}', 'n': 'x'}}"),
        ("{'api_key': 'abc', 'n': 'x'}", "{'api_key': 'abc', 'n': 'x'}"),
        ('{"refreshToken": 12345, "ok": true}', f'{{"refreshToken": {MASK}, "ok": true}}'),
        ('{"password": null, "id_token": ""}', '{"password": null, "id_token": ""}'),
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
    assert r.url("https://u:ab@h/?access_token=ab&x=ab") == (
        f"https://u:{MASK}@h/?access_token={MASK}&x=ab"
    )
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


@pytest.mark.parametrize("name", sorted(CREDENTIAL_HEADERS))
def test_headers_mask_each_credential_header_case_insensitively(name: str) -> None:
    r = Redactor()
    for spelling in (name, name.upper(), name.title()):
        assert r.headers({spelling: "v4lue", "Accept": "application/json"}) == {
            spelling: MASK,
            "Accept": "application/json",
        }


@pytest.mark.parametrize("name", sorted(SENSITIVE_HEADERS))
def test_headers_mask_each_secret_looking_header_the_config_sends(name: str) -> None:
    r = Redactor()
    r.add_secret_header(name)  # what learn() does with a config header of that name
    for spelling in (name, name.upper(), name.title()):
        assert r.headers({spelling: "v4lue", "Accept": "application/json"}) == {
            spelling: MASK,
            "Accept": "application/json",
        }


def test_headers_keep_auth_scheme_and_mask_credentials_only(redactor: Redactor) -> None:
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
        "X-GitHub-Token": "ghp_x",  # a response header: no secret the config knows
        "X-Client-Secret": "cs",
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
        "url": f"https://h/?api_key=k&q={MASK}",
        "config": {
            "auth": {"user": "alice", "password": MASK, "apiKey": 12345},
            "Authorization": [MASK, MASK],
            "client_secret": None,
            "refresh_token": "",
            "use_token": True,
            "headers": {"X-Api-Key": "abc", "Accept": "*/*"},
        },
        "items": [{"id": 1, "note": f"contains {MASK}"}, "token=abc", 3.5, None],
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


# -- every spelling ---------------------------------------------------------------------

TOKEN = "tok.bearer+S3cr3t/value=="  # the characters servers like to escape: + / =


def _json_escape_all(text: str, *, upper: bool) -> str:
    return "".join(f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}" for c in text)


def _decodings(text: str) -> set[str]:
    """What a reader could make of a text: as is, JSON-, URL- and HTML-decoded, nested."""
    out = {text}
    for _ in range(3):
        more = set()
        for item in out:
            more |= {unquote(item), unquote_plus(item), html.unescape(item)}
            with contextlib.suppress(ValueError):
                more.add(json.loads(f'"{item}"'))
        out |= more
    return out


SPELLINGS = {
    "raw": TOKEN,
    "PHP json_encode (\\/)": TOKEN.replace("/", "\\/"),
    ".NET (\\u002B, upper hex)": TOKEN.replace("+", "\\u002B").replace("=", "\\u003D"),
    "lower hex": TOKEN.replace("+", "\\u002b"),
    "every character escaped": _json_escape_all(TOKEN, upper=True),
    "every other character escaped": "".join(
        f"\\u{ord(c):04x}" if i % 2 else c for i, c in enumerate(TOKEN)
    ),
    "JSON in a JSON string": TOKEN.replace("/", "\\\\\\/").replace("+", "\\\\u002B"),
    "percent, upper hex": "tok.bearer%2BS3cr3t%2Fvalue%3D%3D",
    "percent, lower hex": "tok.bearer%2bS3cr3t%2fvalue%3d%3d",
    "percent, letters too": "%74ok.bearer%2BS3cr3t/value==",
    "percent twice": "tok.bearer%252BS3cr3t%252Fvalue%253D%253D",
    "HTML decimal": "tok.bearer&#43;S3cr3t&#47;value&#61;&#0061;",
    "HTML hex": "tok.bearer&#x2B;S3cr3t&#X2f;value&#x3d;=",
    "mixed": "tok.bearer%2BS3cr3t\\/value&#61;\\u003d",
}


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_a_secret_is_masked_in_any_spelling(spelling: str) -> None:
    redactor = Redactor([TOKEN])
    text = f'{{"echo": "Bearer {spelling}", "n": 1}}'

    out = redactor.text(text)

    assert out == f'{{"echo": "Bearer {MASK}", "n": 1}}'
    assert all(TOKEN not in decoded for decoded in _decodings(out))
    assert redactor.mentions_secret(text)
    assert redactor.literals({"echo": spelling}) == {"echo": MASK}


def test_spaces_and_non_ascii_characters_in_any_spelling() -> None:
    secret = "open sesame ✓😀"
    redactor = Redactor([secret])
    for spelling in (
        "open+sesame+%E2%9C%93%F0%9F%98%80",
        "open%20sesame%20%e2%9c%93%f0%9f%98%80",
        "open sesame \\u2713\\ud83d\\ude00",
        "open&#32;sesame ✓&#128512;",
    ):
        assert redactor.text(f"<{spelling}>") == f"<{MASK}>", spelling


def test_escapes_of_other_characters_are_left_alone() -> None:
    redactor = Redactor([TOKEN])
    text = '{"name": "\\u0416\\u0436 caf\\u00e9", "url": "/a%20b?q=x&amp;y", "ok": "\\/"}'
    assert redactor.text(text) == text


def test_basic_credentials_in_the_url_safe_alphabet_and_unpadded() -> None:
    redactor = Redactor()
    redactor.add_basic_credentials("alice", "pa55>>?~w0rd")
    raw = b"alice:pa55>>?~w0rd"
    for token in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = token.decode()
        assert redactor.text(f"x {text} y") == f"x {MASK} y"
        assert redactor.text(f"x {text.rstrip('=')} y") == f"x {MASK} y"


# -- what is not a secret because of its name -----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "upstream failed: code=503 (retry later)",
        '{"code": 503, "token": "next-cursor-abc", "key": "PROJ-1", "api_key": "abc"}',
        "GET /items?pagination_token=c2&$skiptoken=9&syncToken=x1&start_key=k7 HTTP/1.1",
        "X-Request-Token: 0af3\nX-Api-Key-Hint: none",
    ],
)
def test_text_shows_what_is_no_known_secret_whatever_its_name(text: str) -> None:
    assert Redactor(["s3cr3t-value"]).text(text) == text


def test_a_name_the_config_marked_secret_is_masked_by_position_even_short() -> None:
    redactor = Redactor()
    redactor.add_secret_param("tenant_pin")
    redactor.add_secret_header("X-Tenant")
    assert redactor.text("tenant_pin=12 and X-Tenant: ab") == (
        f"tenant_pin={MASK} and X-Tenant: {MASK}"
    )
    assert redactor.text('{"tenantPin": "12"}') == f'{{"tenantPin": "{MASK}"}}'
    assert redactor.url("/x?tenant_pin=12&pin=12") == f"/x?tenant_pin={MASK}&pin=12"


def test_server_tokens_in_set_cookie_and_oauth_fields_are_masked_in_messages() -> None:
    """A token the server sends is no configured secret: masked by position in messages."""
    redactor = Redactor()
    text = (
        "Set-Cookie: sid=srv-91ab; Path=/\n"
        '{"access_token": "srv-at-1", "refresh_token": "srv-rt-1", "id_token": "e.y.J",'
        ' "token_type": "Bearer", "expires_in": 3600}'
    )
    assert redactor.text(text) == (
        f"Set-Cookie: {MASK}\n"
        f'{{"access_token": "{MASK}", "refresh_token": "{MASK}", "id_token": "{MASK}",'
        ' "token_type": "Bearer", "expires_in": 3600}'
    )
    assert redactor.headers([("Set-Cookie", "sid=srv-91ab")]) == {"Set-Cookie": MASK}
    # ... while a record keeps it: it is the API's data.
    record = {"access_token": "srv-at-1", "set_cookie": "sid=srv-91ab"}
    assert redactor.literals(record) == record


def test_an_unclosed_value_is_masked_to_the_end_of_its_line() -> None:
    redactor = Redactor()
    assert redactor.text('{"password": "hunter2 and more\nnext line') == (
        f'{{"password": "{MASK}\nnext line'
    )


# -- excerpts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", range(1, len(TOKEN)))
def test_an_excerpt_never_keeps_part_of_a_secret_that_straddles_its_cut(where: int) -> None:
    redactor = Redactor([TOKEN])
    for spelling in (TOKEN, SPELLINGS["every other character escaped"]):
        text = "x" * (100 - where) + spelling + "y" * 100
        shown, cut = redactor.excerpt(text, 100)
        assert cut
        assert not any(TOKEN[:3] in d for d in _decodings(shown)), shown
        assert shown.startswith("x" * (100 - where))


def test_an_excerpt_reads_only_a_window_of_a_long_text() -> None:
    redactor = Redactor([TOKEN])
    long_secret = "L" * 300 + "-secret"
    redactor.add_secret(long_secret)
    text = (long_secret + " ") * 10 + TOKEN + "z" * 10_000_000
    shown, cut = redactor.excerpt(text, 200)
    assert cut
    assert len(shown) == 200 or shown.endswith(MASK)
    assert "LLL" not in shown
    assert TOKEN not in shown


def test_text_quoting_masks_a_known_secret_cut_short_before_dots() -> None:
    redactor = Redactor([TOKEN])
    message = 'No attribute `x` in object:\n{"echo":"Bearer ' + TOKEN[:9] + "..."
    assert redactor.text_quoting(message, {}) == (
        'No attribute `x` in object:\n{"echo":"Bearer ' + MASK + "..."
    )


# -- linear time against hostile text ---------------------------------------------------------

ADVERSARIAL = {
    "a=a=": "a=" * (1 << 19),
    "access_token=": 'access_token="' * ((1 << 20) // 14),
    '"a":"a":': '"a":' * (1 << 18),
    '"password":"x\\': '"password":"x\\' * ((1 << 20) // 14),
    "backslashes": "\\" * (1 << 20),
    "dots": "..." * ((1 << 20) // 3),
    "percent escapes": "%74" * ((1 << 20) // 3),
    "JSON escapes": "\\u0074" * ((1 << 20) // 6),
    "HTML references": "&#116;" * ((1 << 20) // 6),
    "header lines": "Cookie: x\n" * ((1 << 20) // 10),
    "userinfo": "//a:" * (1 << 18),
}


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_redacting_a_megabyte_of_hostile_text_stays_linear(text: str) -> None:
    """A safety bound, not a performance claim: redaction must not be quadratic.

    Each text is 1 MB built to make a backtracking or restart-from-every-key redactor
    quadratic (today's took minutes on several); a linear one takes a fraction of a
    second. The ceiling is CPU time of this process (not wall time, so a loaded machine
    does not make it flaky) and generous: 2 s per call.
    """
    redactor = Redactor([TOKEN, "d1gest-pa55-Wm3/y"], secret_params=["api_key"])
    redactor.add_basic_credentials("alice", "b4sic-pa55-Zq8!x")
    for call in (
        redactor.text,
        lambda s: redactor.text_quoting(s, {}),
        redactor.mentions_secret,
        redactor.url,
        lambda s: redactor.headers({"Link": s}),
    ):
        started = time.process_time()
        call(text)
        assert time.process_time() - started < 2.0
