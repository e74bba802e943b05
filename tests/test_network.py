"""TLS and network per stream: mutual TLS with client certificates, and proxies.

A local mTLS server (trustme certificates, ``CERT_REQUIRED``) refuses a client without a
certificate and serves one with it, also with an encrypted key and its password. A small
forward proxy (tests/proxy_server.py) logs what passes through: absolute-form requests for
http, ``CONNECT`` tunnels for https; its credentials never appear in any output.
"""

from __future__ import annotations

import base64
import ssl
import typing as t
from urllib.parse import quote

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from fault_server import FaultServer, json_reply
from proxy_server import ForwardProxy

from tap_rhttp.errors import ConfigErrors, RequestError
from tap_rhttp.run.context import RunContext

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from server import LocalServer

PROXY_USER = "tap"
PROXY_PASS = "proxy-pa55:w0rd@9f3e"
KEY_PASSWORD = "client-key-pa55-77d1"
SCHEMA = {"properties": {"ok": {"type": "boolean"}}}


class Pki(t.NamedTuple):
    ca: Path  # the CA bundle the client trusts
    cert: Path  # the client certificate (no key)
    key: Path  # its key
    combined: Path  # certificate and key in one PEM
    encrypted_key: Path  # the key, encrypted with KEY_PASSWORD
    server: ssl.SSLContext  # requires a client certificate from the CA
    plain_server: ssl.SSLContext  # the same server certificate, no client certificate asked


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_leaf = ca.issue_cert("127.0.0.1", "localhost")
    client_leaf = ca.issue_cert("client.example")
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    client_leaf.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client_leaf.private_key_pem.write_to_path(str(root / "client.key"))
    client_leaf.private_key_and_cert_chain_pem.write_to_path(str(root / "combined.pem"))
    key = serialization.load_pem_private_key(client_leaf.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    )
    (root / "encrypted.key").write_bytes(encrypted)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_leaf.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    plain = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_leaf.configure_cert(plain)
    return Pki(
        root / "ca.pem",
        root / "client.pem",
        root / "client.key",
        root / "combined.pem",
        root / "encrypted.key",
        context,
        plain,
    )


@pytest.fixture
def mtls(pki: Pki) -> Iterator[FaultServer]:
    with FaultServer(tls=pki.server) as server:
        server.route("/who")(lambda hit: json_reply({"ok": True}))
        yield server


def mtls_config(server: FaultServer, pki: Pki, **extra: t.Any) -> dict[str, t.Any]:
    spec = {
        "name": "s",
        "url": server.url + "/who",
        "verify": str(pki.ca),
        "reattempts": 1,
        "schema": SCHEMA,
        **extra,
    }
    return {"streams": [spec]}


@pytest.mark.timeout(30)
def test_an_mtls_server_refuses_a_client_without_a_certificate(
    mtls: FaultServer, pki: Pki, sync: t.Any
) -> None:
    with pytest.raises(RequestError) as caught:
        sync(mtls_config(mtls, pki))
    assert mtls.hits() == []  # no request got through the handshake
    text = str(caught.value)
    assert "TLS error" in text or "connection failed" in text


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "files",
    [
        {"client_cert": "cert", "client_key": "key"},
        {"client_cert": "combined"},
        {"client_cert": "cert", "client_key": "encrypted_key", "client_key_password": KEY_PASSWORD},
    ],
    ids=["cert and key", "one PEM", "encrypted key"],
)
def test_an_mtls_server_serves_a_client_with_a_certificate(
    files: dict[str, str], mtls: FaultServer, pki: Pki, sync: t.Any
) -> None:
    options = {
        name: (value if name == "client_key_password" else str(getattr(pki, value)))
        for name, value in files.items()
    }
    result = sync(mtls_config(mtls, pki, **options))
    assert result.records("s") == [{"ok": True}]
    assert [h.path for h in mtls.hits()] == ["/who"]


@pytest.mark.timeout(30)
def test_an_encrypted_key_without_its_password_fails_clearly(
    mtls: FaultServer, pki: Pki, sync: t.Any
) -> None:
    config = mtls_config(mtls, pki, client_cert=str(pki.cert), client_key=str(pki.encrypted_key))
    with pytest.raises(RequestError) as caught:
        sync(config)
    assert "TLS error" in str(caught.value)
    assert "password" in str(caught.value)


@pytest.mark.timeout(30)
def test_a_wrong_key_password_is_a_tls_error_that_never_shows_it(
    mtls: FaultServer, pki: Pki, cli: t.Any
) -> None:
    wrong = "wrong-key-pa55-1234"
    config = mtls_config(
        mtls,
        pki,
        client_cert=str(pki.cert),
        client_key=str(pki.encrypted_key),
        client_key_password=wrong,
    )
    done = cli(config, timeout=25)
    assert done.code == 1
    assert "TLS error" in done.stderr
    assert wrong not in done.stderr + done.stdout
    assert mtls.hits() == []


def test_certificate_files_are_checked_before_any_request(tmp_path: Path) -> None:
    config = {
        "streams": [
            {
                "name": "s",
                "url": "https://127.0.0.1:1/x",
                "client_cert": str(tmp_path / "missing.pem"),
                "client_key": str(tmp_path / "missing.key"),
            }
        ]
    }
    with pytest.raises(ConfigErrors) as caught:
        RunContext(config)
    message = str(caught.value)
    assert "streams[0].client_cert:" in message
    assert "streams[0].client_key:" in message
    assert "cannot be read" in message


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"client_key": "/k.pem"}, "streams[0].client_key"),
        ({"client_key_password": "x"}, "streams[0].client_key_password"),
        ({"proxy": "socks5://127.0.0.1:1080"}, "streams[0].proxy"),
        ({"proxy": "proxy.internal:3128"}, "streams[0].proxy"),
    ],
)
def test_tls_and_proxy_options_are_checked(extra: dict[str, str], path: str) -> None:
    with pytest.raises(ConfigErrors) as caught:
        RunContext({"streams": [{"name": "s", "url": "https://a.example", **extra}]})
    assert f"{path}:" in str(caught.value)


def test_a_bad_proxy_url_message_hides_its_password() -> None:
    with pytest.raises(ConfigErrors) as caught:
        RunContext(
            {"streams": [{"name": "s", "url": "https://a", "proxy": f"ftp://u:{PROXY_PASS}@p"}]}
        )
    assert PROXY_PASS not in str(caught.value)
    assert "streams[0].proxy" in str(caught.value)


# --------------------------------------------------------------------------- proxies


def proxy_giveaways() -> set[str]:
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASS}".encode()).decode()
    return {PROXY_PASS, quote(PROXY_PASS, safe=""), quote(PROXY_PASS), basic}


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(credentials=(PROXY_USER, PROXY_PASS)) as forward:
        yield forward


def proxy_url(proxy: ForwardProxy) -> str:
    return proxy.url(PROXY_USER, quote(PROXY_PASS, safe=""))


@pytest.mark.timeout(30)
def test_http_goes_through_the_proxy_in_absolute_form(
    proxy: ForwardProxy, server: LocalServer, sync: t.Any
) -> None:
    config = {
        "streams": [{"name": "s", "url": server.url + "/records?n=2", "proxy": proxy_url(proxy)}]
    }

    records = sync(config).records("s")

    assert [r["id"] for r in records] == [1, 2]
    hits = proxy.hits()
    assert hits
    assert hits[0].method == "GET"
    assert hits[0].target == server.url + "/records?n=2"
    assert all(hit.allowed for hit in hits)
    # the origin saw an ordinary request, no proxy credentials
    assert server.log
    assert not any("Proxy-Authorization" in r.headers for r in server.log)


@pytest.mark.timeout(30)
def test_https_goes_through_the_proxy_with_connect(
    proxy: ForwardProxy, pki: Pki, sync: t.Any
) -> None:
    with FaultServer(tls=pki.plain_server) as origin:
        origin.route("/who")(lambda hit: json_reply({"ok": True}))
        config = {
            "streams": [
                {
                    "name": "s",
                    "url": origin.url + "/who",
                    "verify": str(pki.ca),
                    "proxy": proxy_url(proxy),
                    "schema": SCHEMA,
                }
            ]
        }
        records = sync(config).records("s")
        origin_hits = origin.hits()

    assert records == [{"ok": True}]
    (hit,) = proxy.hits()
    assert hit.method == "CONNECT"
    assert hit.target == f"127.0.0.1:{origin.port}"
    assert hit.allowed
    assert [h.path for h in origin_hits] == ["/who"]
    assert not any(h.header("Proxy-Authorization") for h in origin_hits)


@pytest.mark.timeout(30)
def test_mtls_through_a_proxy(
    proxy: ForwardProxy, mtls: FaultServer, pki: Pki, sync: t.Any
) -> None:
    config = mtls_config(mtls, pki, client_cert=str(pki.combined), proxy=proxy_url(proxy))
    assert sync(config).records("s") == [{"ok": True}]
    assert [h.method for h in proxy.hits()] == ["CONNECT"]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("where", ["proxy refuses", "origin fails"])
def test_proxy_credentials_never_appear_in_any_output(
    where: str,
    proxy: ForwardProxy,
    server: LocalServer,
    cli: t.Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAP_RHTTP_LOGLEVEL", "DEBUG")
    used = proxy_url(proxy) if where == "origin fails" else proxy.url(PROXY_USER, "wrong-pa55-4d4d")
    url = server.url + ("/status/500" if where == "origin fails" else "/records")
    config = {
        "streams": [
            {
                "name": "s",
                "url": url,
                "proxy": used,
                "reattempts": 2,
                "backoff_base": 0.1,
                "backoff_max": 0.1,
            }
        ]
    }
    done = cli(config, "--discover", timeout=30)

    assert done.code == 1
    assert proxy.hits()
    output = done.stdout + done.stderr
    leaked = sorted(g for g in proxy_giveaways() | {"wrong-pa55-4d4d"} if g in output)
    assert not leaked, f"output leaks {leaked}"
    assert "Error in HTTP GET of" in done.stderr


@pytest.mark.timeout(30)
def test_the_environment_proxy_is_used_when_proxy_is_unset(
    server: LocalServer, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy() as open_proxy:
        monkeypatch.setenv("HTTP_PROXY", open_proxy.url())
        sync({"streams": [{"name": "s", "url": server.url + "/records?n=1"}]})
        assert [h.target for h in open_proxy.hits()] == [server.url + "/records?n=1"]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        sync({"streams": [{"name": "s", "url": server.url + "/records?n=1"}]})
        assert len(open_proxy.hits()) == 1  # bypassed


@pytest.mark.timeout(30)
def test_chains_sharing_connections_each_get_their_origins_environment_proxy(
    server: LocalServer, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chains run one after another share their connections and what the environment
    says per origin: NO_PROXY bypasses one origin, the other goes through the proxy."""
    with ForwardProxy() as open_proxy:
        monkeypatch.setenv("HTTP_PROXY", open_proxy.url())
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        hosts = ["127.0.0.1", "localhost", "127.0.0.1", "localhost"]
        spec = {"name": "s", "url": f"http://{{{{ item }}}}:{server.port}/records?n=1"}
        schema = {"properties": {"id": {"type": "integer"}}}
        result = sync({"streams": [{**spec, "for_each": hosts, "schema": schema}]})
        assert len(result.records("s")) == 4
        proxied = f"http://localhost:{server.port}/records?n=1"
        assert [h.target for h in open_proxy.hits()] == [proxied, proxied]
        assert len(server.requests_to("/records")) == 4  # two of them through the proxy


@pytest.mark.timeout(30)
def test_proxy_wins_over_the_environment(
    proxy: ForwardProxy, server: LocalServer, sync: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")  # would refuse
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    config = {
        "streams": [{"name": "s", "url": server.url + "/records?n=1", "proxy": proxy_url(proxy)}]
    }
    assert len(sync(config).records("s")) == 1
    assert len(proxy.hits()) == 1


def test_a_templated_proxy_password_comes_from_secrets(
    proxy: ForwardProxy, server: LocalServer, sync: t.Any
) -> None:
    config = {
        "secrets": {"proxy": PROXY_PASS},
        "streams": [
            {
                "name": "s",
                "url": server.url + "/records?n=1",
                "proxy": f"http://{PROXY_USER}:{{{{ secrets['proxy'] }}}}@127.0.0.1:{proxy.port}",
            }
        ],
    }
    assert len(sync(config).records("s")) == 1
    assert all(hit.allowed for hit in proxy.hits())
