"""The console's aiohttp app: routes, the credential check, and where each number comes from.

    app = build_console(ConsoleSettings(configs=..., events=..., redis_url=...))

* campaigns: the config tree (``--configs``), re-read when its files change, so every configured
  campaign is listed even before it has an event;
* counters: the event log (``--events``) through :mod:`dsp.offline.console_data` (DuckDB), run in
  a worker thread; "today" is the current UTC date (``?day=YYYY-MM-DD`` for another);
* live state: committed spend from the Redis day ledger (``--redis-url``), λ and the brake from
  the bidder's ``/metrics`` (``--bidder-metrics``) when given, else λ of the newest logged bid;
* fair lending: :mod:`dsp.offline.fairlending`, computed once per config version in the
  background ("pending" until then);
* forecast: ``/forecast?proposal=NAME`` runs :func:`dsp.offline.forecast.run.forecast` for a
  config tree found under ``--proposals`` (names from that folder only, never a free path).

Credential: with ``token`` set, every page needs it (``Authorization: Bearer``, or ``?token=``
once, which sets an HttpOnly cookie). The CLI refuses to bind beyond loopback without one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import ClientSession, ClientTimeout, web

from dsp.config.reloader import SnapshotHolder
from dsp.config.snapshot import Snapshot
from dsp.console import views

COOKIE = "dsp_console"
_METRIC = re.compile(r'^(dsp_pacing_multiplier|dsp_budget_brake)(?:\{campaign="([^"]*)"\})? '
                     r'([0-9.eE+-]+)$')


class ConsoleSettings(msgspec.Struct, frozen=True):
    configs: str
    events: str
    redis_url: str | None = None
    proposals: str | None = None
    bidder_metrics_url: str | None = None
    models: str = "models"
    data_dir: str | None = None
    token: str | None = None


class Console:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.holder = SnapshotHolder.load(Path(settings.configs))
        self.fairness: dict[str, dict[str, str]] = {}  # config version -> campaign -> status
        self.reference: Any = None
        self.redis: Any = None
        self._fair_task: asyncio.Task[None] | None = None

    @property
    def snapshot(self) -> Snapshot:
        if self.holder.changed():
            self.holder.reload()
        return self.holder.current

    # --- data ------------------------------------------------------------------------------
    async def _fair(self, snap: Snapshot) -> None:
        from dsp.offline.fairlending import assess, load_reference

        def compute() -> dict[str, str]:
            if self.reference is None:
                self.reference = load_reference(
                    Path(self.settings.models),
                    Path(self.settings.data_dir) if self.settings.data_dir else None)
            return {r.campaign: (f"{'passes' if r.passes else 'FAILS'} (AIR sex {r.sex_air:.2f}, "
                                 f"age {r.age_air:.2f})") for r in assess(snap, self.reference)}
        try:
            self.fairness[snap.version] = await asyncio.to_thread(compute)
        except (OSError, ValueError) as exc:
            self.fairness[snap.version] = {c.id: f"unavailable: {exc}" for c in snap.campaigns}

    def fairness_of(self, snap: Snapshot) -> dict[str, str]:
        got = self.fairness.get(snap.version)
        if got is None and (self._fair_task is None or self._fair_task.done()):
            self._fair_task = asyncio.get_running_loop().create_task(self._fair(snap))
        return got or {}

    async def _live(self) -> tuple[dict[str, float], str]:
        url = self.settings.bidder_metrics_url
        if not url:
            return {}, "unknown"
        try:
            async with ClientSession(timeout=ClientTimeout(total=1.5)) as s, s.get(url) as resp:
                text = await resp.text()
        except (TimeoutError, OSError):
            return {}, "unknown"
        lams: dict[str, float] = {}
        brake = "unknown"
        for line in text.splitlines():
            m = _METRIC.match(line)
            if m and m.group(1) == "dsp_pacing_multiplier" and m.group(2) is not None:
                lams[m.group(2)] = float(m.group(3))
            elif m and m.group(1) == "dsp_budget_brake":
                brake = "ON" if float(m.group(3)) > 0 else "off"
        return lams, brake

    async def _redis_spent(self, snap: Snapshot, day: str) -> dict[str, int]:
        if not self.settings.redis_url:
            return {}
        from dsp.budget.keys import campaign_day
        from dsp.budget.status import day_status, open_client

        if self.redis is None:
            self.redis = open_client(self.settings.redis_url)
        when = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp() + 43_200
        out: dict[str, int] = {}
        try:
            for b in snap.budgets:
                status = await day_status(self.redis, b.campaign_id,
                                          campaign_day(when, b.utc_offset_minutes))
                out[b.campaign_id] = status["spent"]
        except Exception as exc:  # redis-py raises its own ConnectionError / TimeoutError types
            if isinstance(exc, OSError) or type(exc).__module__.startswith("redis"):
                return {}  # the page still renders; the live line is left out
            raise
        return out

    async def rows(self, day: str) -> list[views.CampaignRow]:
        from dsp.offline.console_data import DayStats, campaign_day_stats

        snap = self.snapshot
        stats = await asyncio.to_thread(campaign_day_stats, Path(self.settings.events), day)
        (lams, brake), spent = await asyncio.gather(self._live(), self._redis_spent(snap, day))
        fair = self.fairness_of(snap)
        budgets = {b.campaign_id: b for b in snap.budgets}
        out: list[views.CampaignRow] = []
        for c in snap.campaigns:
            s = stats.get(c.id, DayStats(c.id))
            lam, src = ((lams[c.id], "bidder") if c.id in lams else
                        (s.last_lambda, "last logged bid") if s.last_lambda is not None else
                        (None, ""))
            b = budgets[c.id]
            out.append(views.CampaignRow(c.id, c.name, c.currency, b.daily_budget_micros,
                                         list(b.pacing_curve), s, lam, src, brake,
                                         spent.get(c.id), fair.get(c.id, "pending")))
        return out


KEY = web.AppKey("console", Console)


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def _day(request: web.Request) -> str:
    day = request.query.get("day", _today())
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise web.HTTPBadRequest(text="day: expected YYYY-MM-DD") from None
    return day


async def overview(request: web.Request) -> web.Response:
    con = request.app[KEY]
    day = _day(request)
    html = views.overview(await con.rows(day), day, con.settings.events)
    return web.Response(text=html, content_type="text/html")


async def campaign_page(request: web.Request) -> web.Response:
    con = request.app[KEY]
    day = _day(request)
    cid = request.match_info["cid"]
    for row in await con.rows(day):
        if row.id == cid:
            return web.Response(text=views.campaign(row, day), content_type="text/html")
    raise web.HTTPNotFound(text=f"campaign {cid!r} is not configured")


async def history_page(request: web.Request) -> web.Response:
    from dsp.offline.console_data import config_history

    con = request.app[KEY]
    changes = await asyncio.to_thread(config_history, Path(con.settings.events))
    return web.Response(text=views.history(changes), content_type="text/html")


def _proposals(settings: ConsoleSettings) -> list[str]:
    if not settings.proposals:
        return []
    root = Path(settings.proposals)
    return sorted(p.name for p in root.iterdir() if (p / "campaigns").is_dir()) \
        if root.is_dir() else []


async def forecast_page(request: web.Request) -> web.Response:
    con = request.app[KEY]
    names = _proposals(con.settings)
    chosen = request.query.get("proposal")
    result = ""
    if chosen is not None:
        if chosen not in names:
            raise web.HTTPBadRequest(text="proposal: not one of the listed config trees")
        result = await asyncio.to_thread(_run_forecast, con, Path(con.settings.proposals or "")
                                         / chosen)
    return web.Response(text=views.forecast_form(names, chosen, result), content_type="text/html")


def _run_forecast(con: Console, proposal: Path) -> str:
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid
    from dsp.offline.fairlending import assess, load_reference, render
    from dsp.offline.forecast.report import render as render_forecast
    from dsp.offline.forecast.run import TooThin, forecast

    old = con.holder.current
    try:
        new = load_snapshot(proposal)
    except ConfigInvalid as exc:
        return views.forecast_result("the proposed tree is invalid:\n" + "\n".join(
            str(p) for p in exc.problems), "")
    try:
        text = render_forecast(forecast(old, new, Path(con.settings.events)))
    except TooThin as exc:
        text = f"refusing: {exc}"
    try:
        if con.reference is None:
            con.reference = load_reference(Path(con.settings.models), Path(
                con.settings.data_dir) if con.settings.data_dir else None)
        fair = "\n".join(f"[{label}] " + render(assess(snap, con.reference), con.reference.source)
                         for label, snap in (("old", old), ("new", new)))
    except (OSError, ValueError) as exc:
        fair = f"unavailable: {exc}"
    return views.forecast_result(text, fair)


@web.middleware
async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[KEY].settings.token
    if not token:
        resp: web.StreamResponse = await handler(request)
        return resp
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() \
        or request.cookies.get(COOKIE, "") or request.query.get("token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPUnauthorized(text="console: credential required (DSP_CONSOLE_TOKEN)")
    if "token" in request.query:  # first visit with ?token=: keep it in a cookie, drop it from the URL
        query = {k: v for k, v in request.query.items() if k != "token"}
        resp = web.HTTPFound(request.rel_url.with_query(query))
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        raise resp
    resp = await handler(request)
    return resp


@web.middleware
async def no_store(request: web.Request, handler: Any) -> web.StreamResponse:
    resp: web.StreamResponse = await handler(request)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return resp


async def _lifecycle(app: web.Application) -> Any:
    yield
    con = app[KEY]
    if con.redis is not None:
        await con.redis.aclose()


def build_console(settings: ConsoleSettings) -> web.Application:
    app = web.Application(middlewares=[no_store, require_token])
    app[KEY] = Console(settings)
    app.router.add_get("/", overview)
    app.router.add_get("/campaign/{cid}", campaign_page)
    app.router.add_get("/history", history_page)
    app.router.add_get("/forecast", forecast_page)
    app.cleanup_ctx.append(_lifecycle)
    return app


def serve(app: web.Application, host: str, port: int, announce: Callable[[], None]) -> None:
    """Run the console until SIGINT/SIGTERM; ``announce`` is called once it listens."""
    web.run_app(app, host=host, port=port, print=lambda _msg: announce(), access_log=None)
