"""Headless Chromium for page tests: load a URL, return the rendered DOM, every JavaScript error,
and optionally a PNG screenshot. Talks the DevTools protocol over a websocket (aiohttp).

    async with Browser.start() as browser:
        page = await browser.load("http://127.0.0.1:8090/")
        page.dom, page.errors, page.png

Chromium comes from Debian's ``chromium`` package (``scripts/bootstrap`` installs it);
:func:`chromium_path` returns None when it is missing, and tests skip. Flags keep it quiet and
local: no sandbox (containers), no GPU, no QUIC, no background networking, no component updates,
a throwaway profile.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page(msgspec.Struct):
    url: str
    dom: str
    errors: list[str]
    png: bytes = b""


class Browser:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, profile: str) -> None:
        self.proc = proc
        self.port = port
        self.profile = profile

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, timeout_s: float = 30.0) -> AsyncIterator[Browser]:
        exe = chromium_path()
        if exe is None:
            raise FileNotFoundError("chromium is not installed (scripts/bootstrap installs it)")
        profile = tempfile.mkdtemp(prefix="dsp-chromium-")
        proc = await asyncio.create_subprocess_exec(
            exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            loop = asyncio.get_running_loop()
            give_up = loop.time() + timeout_s
            while not port_file.exists() or not port_file.read_text().strip():
                if loop.time() > give_up or proc.returncode is not None:
                    raise TimeoutError("chromium did not open its DevTools port")
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            yield cls(proc, port, profile)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            shutil.rmtree(profile, ignore_errors=True)

    async def load(self, url: str, *, screenshot: bool = False, timeout_s: float = 30.0) -> Page:
        """Open ``url`` in a new tab, wait for the load event, collect DOM, errors, screenshot."""
        async with aiohttp.ClientSession() as http:
            async with http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as resp:
                target = await resp.json(content_type=None)
            try:
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    return await asyncio.wait_for(self._drive(ws, url, screenshot), timeout_s)
            finally:
                async with http.get(f"http://127.0.0.1:{self.port}/json/close/{target['id']}"):
                    pass

    async def _drive(self, ws: Any, url: str, screenshot: bool) -> Page:
        errors: list[str] = []
        counter = iter(range(1, 1_000_000))
        pending: dict[int, asyncio.Future[Any]] = {}
        loaded = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data.get("result", data.get("error")))
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Runtime.exceptionThrown":
                    errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    errors.append(json.dumps(params.get("args", []))[:500])
                elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                    errors.append(params["entry"].get("text", "")[:500])
                elif method == "Page.loadEventFired":
                    loaded.set()

        async def call(method: str, **params: Any) -> Any:
            n = next(counter)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending[n] = fut
            await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
            return await fut

        task = asyncio.create_task(reader())
        try:
            for domain in ("Page", "Runtime", "Log"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await loaded.wait()
            await asyncio.sleep(0.2)  # late errors
            dom = (await call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                              returnByValue=True))["result"]["value"]
            png = b""
            if screenshot:
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                png = base64.b64decode(shot["data"])
            return Page(url, dom, errors, png)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
