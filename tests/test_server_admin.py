"""The admin application's access rules over real HTTP (loopback and beyond), reload off the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from dsp.server.admin import admin_app


async def _server(token: str | None, loopback: bool, calls: list[str]) -> TestServer:
    async def reload() -> dict[str, object]:
        calls.append(threading.current_thread().name)
        return {"ok": True, "version": "v1"}

    server = TestServer(admin_app(lambda: b"dsp_up 1\n", reload, token=token, loopback=loopback))
    await server.start_server()
    return server


@pytest.fixture()
async def beyond_loopback() -> AsyncIterator[tuple[TestServer, list[str]]]:
    calls: list[str] = []
    server = await _server("tok-123", loopback=False, calls=calls)
    yield server, calls
    await server.close()


async def test_beyond_loopback_everything_needs_the_token(
        beyond_loopback: tuple[TestServer, list[str]]) -> None:
    server, calls = beyond_loopback
    async with aiohttp.ClientSession() as s:
        for path, method in (("/metrics", "GET"), ("/admin/reload", "POST")):
            async with s.request(method, server.make_url(path)) as r:
                assert r.status == 403
            async with s.request(method, server.make_url(path),
                                 headers={"Authorization": "Bearer tok-1234"}) as r:
                assert r.status == 403
            async with s.request(method, server.make_url(path),
                                 headers={"Authorization": "Bearer tok-123"}) as r:
                assert r.status == 200
    assert len(calls) == 1


async def test_loopback_without_token_is_open_and_beyond_refuses_to_build() -> None:
    calls: list[str] = []
    server = await _server(None, loopback=True, calls=calls)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(server.make_url("/metrics")) as r:
                assert r.status == 200 and await r.read() == b"dsp_up 1\n"
            async with s.post(server.make_url("/admin/reload")) as r:
                assert r.status == 200
    finally:
        await server.close()
    with pytest.raises(ValueError):
        admin_app(lambda: b"", lambda: asyncio.sleep(0, {"ok": True}), token=None, loopback=False)


async def test_services_reload_compiles_in_a_thread(redis_url: str) -> None:
    """Services.reload runs SnapshotHolder.prepare in the executor: not on the loop's thread."""
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from dsp.observability.metrics import Metrics
    from dsp.server.app import SERVICES, build_app
    from dsp.server.settings import Settings

    root = Path(__file__).resolve().parent.parent
    settings = Settings(redis_url=redis_url, configs_dir=str(root / "bidder_configs"),
                        models_dir=str(root / "models"), reload_check_s=3600, token_active="k1",
                        token_keys={"k1": b"0123456789abcdef0123456789"})
    app = build_app(settings, Metrics(CollectorRegistry()))
    svc = app[SERVICES]
    seen: list[str] = []
    prepare = svc.holder.prepare

    def spy():  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return prepare()

    svc.holder.prepare = spy  # type: ignore[method-assign]
    result = await svc.reload("test")
    assert result["ok"] is True
    assert seen and seen[0] != threading.current_thread().name
