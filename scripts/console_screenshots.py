"""Screenshots of every console view for docs/marketing.md, on a synthetic two-day event log.

    .venv/bin/python scripts/console_screenshots.py docs/img

The log is what the demo campaigns would have logged serving 8,000 requests (all sampled) over
yesterday and today on a synthetic market (log-normal prices around $4 CPM, 2% CTR, a few
conversions), written by the sink's Parquet writer. So that so small a log fills a budget, the
console runs on a copy of ``bidder_configs/`` with daily budgets of $12 (QuickLoan) and $4
(CashBridge); the proposal halves QuickLoan's max CPM.
Screens come from headless Chromium (:mod:`dsp.testing.browser`) against ``dsp console``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dsp.config.snapshot import load_snapshot
from dsp.events.schema import ConfigEvent, ConversionEvent, Event
from dsp.offline.forecast.eventfiles import log_policy, read_log, write_events
from dsp.offline.forecast.simulate import Row
from dsp.testing.browser import Browser
from dsp.testing.redis_server import free_port
from dsp.testing.users import desktop_banner_request

ROOT = Path(__file__).resolve().parents[1]
DAY_US = 86_400_000_000


def _rows(n: int, first_day: int, seed: int) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    per_day = n // 2
    for i in range(n):
        req = desktop_banner_request(f"r{i}", f"user-{i}")
        if i % 2:
            req["imp"] = [{"id": "1", "banner": {"w": 320, "h": 50}, "bidfloor": 0.2}]
            req["device"] = {"devicetype": 4, "os": "Android", "geo": {"country": "USA"}}
            # CashBridge bids only on fully disclosed supply paths
            req["source"] = {"schain": {"complete": 1, "ver": "1.0", "nodes": [
                {"asi": "exchange.example", "sid": "pub-1", "hp": 1}]}}
        ts = (first_day + i // per_day) * DAY_US + (i % per_day) * (DAY_US // per_day)
        rows.append(Row(ts, "generic", json.dumps(req).encode(), float(rng.uniform(0.005, 0.08)),
                        float(rng.uniform(0.02, 0.25)), True, 1.0))
    return rows


def small_budgets(dst: Path) -> Path:
    shutil.copytree(ROOT / "bidder_configs", dst)
    for name, old, new in (("quickloan-prime", "daily: 500.00", "daily: 12.00"),
                           ("cashbridge-starter", "daily: 200.00", "daily: 4.00")):
        path = dst / "campaigns" / f"{name}.yaml"
        path.write_text(path.read_text().replace(old, new))
    return dst


def build_log(events: Path, configs: Path, n: int = 8000, seed: int = 3) -> None:
    today = int(dt.datetime.now(dt.UTC).timestamp() // 86_400)
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(np.log(4_000.0), 0.6, n))
    clicks = (rng.random(n) < 0.02).astype(np.int8)
    snap = load_snapshot(configs)
    log_policy(snap, _rows(n, today - 1, seed), prices, clicks, events, initial_lambda={},
               part="screens")
    _, outcomes, _ = read_log(events)
    extra: list[Event] = []
    won = [i for i in range(len(outcomes.campaign)) if outcomes.won[i]]
    for k, i in enumerate(won[::40]):
        stages = ("submitted", "approved", "funded")[: 1 + k % 3]
        ts = int(outcomes.ts_us[i]) + 3_600_000_000
        for stage in stages:
            extra.append(ConversionEvent(ts_us=min(ts, (today + 1) * DAY_US - 1),
                                         campaign=outcomes.campaign[i], bid_id=f"screens-b{i}",
                                         stage=stage, amount_micros=3_000_000_000
                                         if stage == "funded" else 0, currency="USD"))
    start = (today - 1) * DAY_US
    extra += [ConfigEvent(ts_us=start + 60_000_000, config_id="host:1:1", config_version="4c1cc9073728",
                          trigger="start", ok=True),
              ConfigEvent(ts_us=start + 7_200_000_000, config_id="host:1:2",
                          config_version="9e02ab41c0d7", previous_version="4c1cc9073728",
                          trigger="admin", actor="marketing",
                          changed=["quickloan-prime: intent_min 0.01 -> 0.004"], ok=True),
              ConfigEvent(ts_us=start + 9_000_000_000, config_id="host:1:3",
                          config_version="9e02ab41c0d7", previous_version="9e02ab41c0d7",
                          trigger="file-watch", ok=False, problems=2)]
    write_events(events, extra, "screens-extra")


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events"
        configs = small_budgets(Path(tmp) / "configs")
        build_log(events, configs)
        proposals = Path(tmp) / "proposals"
        shutil.copytree(configs, proposals / "quickloan-max-cpm-3")
        ql = proposals / "quickloan-max-cpm-3" / "campaigns" / "quickloan-prime.yaml"
        ql.write_text(ql.read_text().replace("max_cpm: 6.00", "max_cpm: 3.00"))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "dsp.cli", "console", "--port", str(port),
                                 "--events", str(events), "--proposals", str(proposals),
                                 "--configs", str(configs)],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            await asyncio.to_thread(proc.stdout.readline)
            base = f"http://127.0.0.1:{port}"
            async with Browser.start() as browser:
                for _ in range(60):
                    if "pending" not in (await browser.load(base + "/")).dom:
                        break
                    await asyncio.sleep(0.5)
                out.mkdir(parents=True, exist_ok=True)
                for name, path in (("overview", "/"), ("campaign", "/campaign/quickloan-prime"),
                                   ("history", "/history"), ("forecast", "/forecast"),
                                   ("forecast-result", "/forecast?proposal=quickloan-max-cpm-3")):
                    page = await browser.load(base + path, screenshot=True, timeout_s=300)
                    if page.errors:
                        raise RuntimeError(f"{path}: JavaScript errors {page.errors}")
                    (out / f"console-{name}.png").write_bytes(page.png)
                    print(f"wrote {out / f'console-{name}.png'}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(shoot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")))
