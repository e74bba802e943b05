"""`--explain` says which auth, proxy, origins, response rules and rate limits apply to a
stream's requests, every secret masked."""

from __future__ import annotations

import base64
import re
import typing as t
from urllib.parse import quote

from proxy_server import ForwardProxy
from server import Reply, Request, json_reply

if t.TYPE_CHECKING:
    from conftest import CliResult
    from server import LocalServer

Cli = t.Callable[..., "CliResult"]
MASK = "***REDACTED***"
CLIENT_SECRET = "explain-client-secret-4f1e"
PROXY_PASS = "explain-proxy-pa55-8c2d"
ACCESS = "explain-access-token-0b9a"


def test_explain_shows_what_applies_with_every_secret_masked(
    server: LocalServer, cli: Cli, tmp_path: t.Any
) -> None:
    @server.route("/oauth/token")
    def token(request: Request) -> Reply:
        return json_reply({"access_token": ACCESS, "expires_in": 3600})

    @server.route("/explain/items")
    def items(request: Request) -> Reply:
        return json_reply(
            [{"id": 1}],
            headers=[("X-RateLimit-Remaining", "10"), ("X-RateLimit-Reset", "30")],
        )

    with ForwardProxy(credentials=("tap", PROXY_PASS)) as proxy:
        config = {
            "streams": [
                {
                    "name": "items",
                    "url": server.url + "/explain/items",
                    "auth": {
                        "type": "oauth2",
                        "token_url": server.url + "/oauth/token",
                        "client_id": "explain-client",
                        "client_secret": CLIENT_SECRET,
                        "scopes": ["read"],
                    },
                    "proxy": proxy.url("tap", quote(PROXY_PASS, safe="")),
                    "trusted_origins": ["https://files.example.com"],
                    "response_rules": [
                        {"status": 404, "action": "skip"},
                        {
                            "when": "response['body']['error'] == 'rate limited'",
                            "action": "retry",
                            "message": "busy",
                        },
                    ],
                    "rate_limit": 5,
                    "max_retry_seconds": 120,
                }
            ]
        }
        result = cli(config, "--explain", "--pages", "1")
        through_proxy = proxy.hits()

    assert result.code == 0, result.stderr
    out = result.stdout
    assert (
        f"auth: oauth2 (client_credentials grant, token from {server.url}/oauth/token, "
        "client auth basic, scopes read)"
    ) in out
    assert f"proxy: http://tap:{MASK}@127.0.0.1:{proxy.port}" in out
    assert (
        "credentials go to: the stream's own origin; trusted_origins: https://files.example.com"
        in out
    )
    assert "response rules (the first match wins):" in out
    assert "  response_rules[0]: status 404 -> skip" in out
    assert (
        "  response_rules[1]: when response['body']['error'] == 'rate limited' -> retry (busy)"
        in out
    )
    assert re.search(r"rate limits: rate_limit 5/s; the server's X-RateLimit-\*, RateLimit", out)
    assert "each wait at most 300 s (retry_after_max); max_retry_seconds 120" in out
    # the curl line: the token and the proxy password masked
    assert f"-H 'Authorization: Bearer {MASK}'" in out
    assert f"--proxy 'http://tap:{MASK}@127.0.0.1:{proxy.port}'" in out
    assert through_proxy  # the requests really went through the proxy
    basic = base64.b64encode(f"tap:{PROXY_PASS}".encode()).decode()
    for secret in (CLIENT_SECRET, PROXY_PASS, quote(PROXY_PASS, safe=""), ACCESS, basic):
        assert secret not in out + result.stderr


def test_explain_says_when_nothing_special_applies(server: LocalServer, cli: Cli) -> None:
    config = {"streams": [{"name": "plain", "url": server.url + "/records?n=1"}]}
    result = cli(config, "--explain", "--pages", "1")
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "auth: none" in out
    assert "proxy: none set (HTTP_PROXY/HTTPS_PROXY/NO_PROXY apply)" in out
    assert "trusted_origins: none" in out
    assert "response rules: none" in out


def test_explain_names_a_client_certificate_and_an_api_key(
    server: LocalServer, cli: Cli, tmp_path: t.Any
) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not used over http")
    config = {
        "streams": [
            {
                "name": "k",
                "url": server.url + "/records?n=1",
                "auth": {"type": "api_key", "name": "X-Key", "value": "explain-api-key-77"},
                "client_cert": str(cert),
                "client_key_password": "explain-key-pa55-31",
            }
        ]
    }
    result = cli(config, "--explain", "--pages", "1")
    assert result.code == 0, result.stderr
    assert "auth: api_key (in the header, named X-Key)" in result.stdout
    assert f"client certificate: {cert} (encrypted, password given)" in result.stdout
    assert f"--cert '{cert}:{MASK}'" in result.stdout or f"--cert {cert}:{MASK}" in result.stdout
    assert "explain-key-pa55-31" not in result.stdout + result.stderr
    assert "explain-api-key-77" not in result.stdout + result.stderr
