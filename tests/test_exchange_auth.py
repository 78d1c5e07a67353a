"""Exchange authentication: the guard's rules (pure) and both transports over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from dsp.config.snapshot import load_snapshot
from dsp.errors import ConfigInvalid
from dsp.exchanges.auth import ExchangeAuth, ExchangeGuard, missing_secrets
from dsp.observability.metrics import Metrics, render
from dsp.server.app import build_app
from dsp.server.settings import TRANSPORTS, Settings
from dsp.testing.serve import serving

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-exchange-key"
PASSWORD = "basic-pw"


def _auth(**over: object) -> ExchangeAuth:
    return msgspec.convert(over, ExchangeAuth)


def _headers(**h: str) -> Callable[[bytes], bytes | None]:
    table = {k.lower().replace("_", "-").encode(): v.encode("utf-8", "surrogateescape")
             for k, v in h.items()}
    return table.get


ENV = {"ACME_KEY": SECRET, "ACME_PW": PASSWORD}


def test_shared_secret_header() -> None:
    g = ExchangeGuard(_auth(secret={"header": "X-Exchange-Key", "env": "ACME_KEY"}), ENV)
    assert g.check("198.51.100.7", _headers(x_exchange_key=SECRET)) is None
    assert g.check("198.51.100.7", _headers(x_exchange_key="wrong")) == 401
    assert g.check("198.51.100.7", _headers()) == 401
    assert g.check("198.51.100.7", _headers(x_exchange_key="ключ")) == 401  # non-ASCII: no error


def test_basic_credentials() -> None:
    g = ExchangeGuard(_auth(basic={"user": "acme", "password_env": "ACME_PW"}), ENV)
    good = "Basic " + base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"acme:nope").decode()
    assert g.check(None, _headers(authorization=good)) is None
    assert g.check(None, _headers(authorization=bad)) == 401
    assert g.check(None, _headers(authorization="Bearer " + PASSWORD)) == 401


def test_either_credential_is_enough() -> None:
    g = ExchangeGuard(_auth(secret={"header": "X-K", "env": "ACME_KEY"},
                            basic={"user": "acme", "password_env": "ACME_PW"}), ENV)
    good_basic = "Basic " + base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
    assert g.check(None, _headers(x_k=SECRET)) is None
    assert g.check(None, _headers(authorization=good_basic)) is None
    assert g.check(None, _headers(x_k="no")) == 401


def test_unset_secret_fails_closed() -> None:
    auth = _auth(secret={"header": "X-K", "env": "NOT_SET_ANYWHERE"})
    g = ExchangeGuard(auth, {})
    assert g.check(None, _headers(x_k="")) == 401
    assert missing_secrets(auth, {}) == ["NOT_SET_ANYWHERE"]
    assert missing_secrets(auth, {"NOT_SET_ANYWHERE": "x"}) == []


def test_cidr_with_and_without_trusted_proxies() -> None:
    direct = ExchangeGuard(_auth(allow_cidrs=["203.0.113.0/24", "2001:db8::/32"]), ENV)
    assert direct.check("203.0.113.9", _headers()) is None
    assert direct.check("::ffff:203.0.113.9", _headers()) is None  # v4-mapped v6 peer
    assert direct.check("2001:db8::1", _headers()) is None
    assert direct.check("198.51.100.1", _headers()) == 403
    # A forwarded header from an untrusted peer proves nothing.
    assert direct.check("198.51.100.1", _headers(x_forwarded_for="203.0.113.9")) == 403

    lb = ExchangeGuard(_auth(allow_cidrs=["203.0.113.0/24"], trusted_proxies=["10.0.0.0/8"]), ENV)
    assert lb.check("10.1.2.3", _headers(x_forwarded_for="203.0.113.9")) is None
    # The client can write the left part; the right-most untrusted hop is what our LB saw.
    assert lb.check("10.1.2.3", _headers(x_forwarded_for="203.0.113.9, 198.51.100.1")) == 403
    assert lb.check("10.1.2.3", _headers(x_forwarded_for="198.51.100.1, 203.0.113.9, 10.0.0.5")) is None
    assert lb.check("10.1.2.3", _headers()) == 403  # behind our LB with no header: nobody named
    assert lb.check("10.1.2.3", _headers(x_forwarded_for="garbage")) == 403
    assert lb.check("10.1.2.3", _headers(x_forwarded_for="10.0.0.9")) == 403


def test_cidr_and_secret_both_required() -> None:
    g = ExchangeGuard(_auth(allow_cidrs=["127.0.0.0/8"], secret={"header": "X-K", "env": "ACME_KEY"}),
                      ENV)
    assert g.check("127.0.0.1", _headers(x_k=SECRET)) is None
    assert g.check("127.0.0.1", _headers()) == 401
    assert g.check("192.0.2.1", _headers(x_k=SECRET)) == 403


def _configs(tmp_path: Path, auth_yaml: str) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(ROOT / "bidder_configs", dst)
    path = dst / "exchanges" / "generic.yaml"
    path.write_text(path.read_text() + auth_yaml)
    return dst


def test_config_rejects_bad_auth_blocks(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid) as err:
        load_snapshot(_configs(tmp_path, "auth:\n  allow_cidrs: [not-a-net]\n"))
    assert "auth.allow_cidrs[0]" in str(err.value.problems)
    with pytest.raises(ConfigInvalid) as err:
        load_snapshot(_configs(tmp_path / "b", "auth:\n  secret: {header: X-K, value: inline}\n"))
    assert "auth" in str(err.value.problems)  # a secret value in YAML is an unknown key


GUARDED = ("auth:\n  secret: {header: X-Exchange-Key, env: DSP_TEST_GENERIC_KEY}\n"
           "  allow_cidrs: [127.0.0.0/8, '::1/128']\n")


@pytest.fixture(params=TRANSPORTS)
async def guarded(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Metrics]]:
    monkeypatch.setenv("DSP_TEST_GENERIC_KEY", SECRET)
    settings = Settings(redis_url=redis_url, configs_dir=str(_configs(tmp_path, GUARDED)),
                        models_dir=str(ROOT / "models"), transport=request.param,
                        token_keys={"k1": b"0123456789abcdef0123456789"}, token_active="k1",
                        reload_check_s=3600)
    metrics = Metrics(CollectorRegistry())
    async with serving(build_app(settings, metrics), settings) as url:
        yield url, metrics


BODY = b'{"id":"r1","imp":[{"id":"1","banner":{"w":300,"h":250}}]}'


async def test_guarded_exchange_over_http(guarded: tuple[str, Metrics]) -> None:
    url, metrics = guarded
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/bid/generic", data=BODY) as r:
            assert r.status == 401
        async with s.post(url + "/bid/generic", data=BODY, headers={"X-Exchange-Key": "nope"}) as r:
            assert r.status == 401
        async with s.post(url + "/bid/generic", data=BODY, headers={"X-Exchange-Key": SECRET}) as r:
            assert r.status == 204  # admitted: decoded and answered (unknown user: no bid)
        async with s.post(url + "/bid/smaato", data=BODY) as r:
            assert r.status == 204  # the other profiles stay open
        # A rejected request's body is never decoded: not JSON at all, still 401 (not 400).
        async with s.post(url + "/bid/generic", data=b"{{{ not json") as r:
            assert r.status == 401
    text = render(metrics).decode()
    assert 'dsp_exchange_auth_rejections_total{exchange="generic",status="401"} 3.0' in text


async def test_non_ascii_credential_header_is_401_not_500(guarded: tuple[str, Metrics]) -> None:
    url, _ = guarded
    port = int(url.rsplit(":", 1)[1])
    head = (b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nX-Exchange-Key: "
            + "ключ".encode() + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
