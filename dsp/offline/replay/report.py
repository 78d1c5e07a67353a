"""Tuning and reports for ``dsp replay`` (formatting only; the replay itself is dsp.offline.replay.engine)."""

from __future__ import annotations

from pathlib import Path

from dsp.budget.pacing import PacingSettings
from dsp.offline.replay.engine import LinearBid, PacedBid, ReplayResult, episode_budget, replay
from dsp.offline.replay.ipinyou import CAMPAIGNS, CampaignInfo, MarketLog, dataset_paths, read_info, read_log

# The replay's fixed settings (docs/replay.md says how they were chosen).
HEADROOM = 8.0
LIN_GRID = tuple(range(6, 306, 6))
REPLAY_PACING = PacingSettings(gain=0.1, smoothing=0.3)
REPLAY_UPDATE_EVERY = 25
PUBLISHED = "published_bid_performance_N1000_c0_1-32.tsv"


def paced(b0: float, info: CampaignInfo) -> PacedBid:
    """Ours, started at Lin's bid level ``b0`` with room to bid up to HEADROOM times higher."""
    return PacedBid(HEADROOM * b0 / info.ctr_train, update_every=REPLAY_UPDATE_EVERY,
                    lambda0=HEADROOM - 1.0, pacing=REPLAY_PACING)


def tune_lin(log: MarketLog, info: CampaignInfo, budget: int, n: int, first_price: bool) -> float:
    """Lin's b0 with the most clicks on ``log`` (ties: the lower b0)."""
    def clicks(b0: int) -> tuple[int, int]:
        r = replay(log, LinearBid(b0, info.ctr_train), budget_per_episode=budget, n_per_episode=n,
                   first_price=first_price)
        return r.clicks, -b0
    return float(max(LIN_GRID, key=clicks))


def split(log: MarketLog, n: int) -> tuple[MarketLog, MarketLog]:
    """First half of the episodes (tuning), second half (evaluation)."""
    cut = (len(log) // n // 2) * n
    return (MarketLog(clicks=log.clicks[:cut], prices=log.prices[:cut], pctr=log.pctr[:cut]),
            MarketLog(clicks=log.clicks[cut:], prices=log.prices[cut:], pctr=log.pctr[cut:]))


def published(data_dir: Path) -> dict[tuple[str, str], int]:
    """(campaign, algo) -> clicks from the authors' table (algo: lin_bid, rlb, mcpc, ss_mdp)."""
    out: dict[tuple[str, str], int] = {}
    path = data_dir / PUBLISHED
    if not path.exists():
        return out
    for line in path.read_text().splitlines()[1:]:
        cols = [c.strip() for c in line.split("\t")]
        if len(cols) < 5:
            continue
        setting = dict(p.strip().split("=", 1) for p in cols[0].split(",") if "=" in p)
        out[(setting.get("camp", ""), setting.get("algo", ""))] = int(cols[4])
    return out


def _fmt(r: ReplayResult) -> str:
    return (f"**{r.clicks}** | {r.impressions} | {r.spend} | {r.ecpc:.2f} | {r.cpm:.2f} | "
            f"{100 * r.win_rate:.2f}% | {100 * r.budget_used_curve[4]:.0f}% / "
            f"{100 * r.budget_used_curve[-1]:.0f}%")


def _compare(tune: MarketLog, evaluate: MarketLog, info: CampaignInfo, budget: int, n: int,
             first_price: bool) -> tuple[float, ReplayResult, ReplayResult]:
    b0 = tune_lin(tune, info, budget, n, first_price)
    lin = replay(evaluate, LinearBid(b0, info.ctr_train), budget_per_episode=budget,
                 n_per_episode=n, first_price=first_price)
    ours = replay(evaluate, paced(b0, info), budget_per_episode=budget, n_per_episode=n,
                  first_price=first_price)
    return b0, lin, ours


def table(data_dir: Path, *, c0: float, n: int, first_price: bool) -> str:
    pub = published(data_dir)
    lines = [
        "| campaign | evaluated on | auctions | budget/episode | Lin b0 | Lin clicks | ours: clicks | "
        "imps | spend | eCPC | CPM | win rate | budget used at 50% / 100% of episode | "
        "published Lin | published RLB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for camp in CAMPAIGNS:
        paths = dataset_paths(data_dir, camp)
        if not (paths["info"].exists() and paths["validation"].exists()):
            continue
        info = read_info(paths["info"])
        budget = episode_budget(info.cpm_train, n, c0)
        val = read_log(paths["validation"])
        tune, evaluate = split(val, n)
        b0, lin, ours = _compare(tune, evaluate, info, budget, n, first_price)
        lines.append(f"| {camp} | validation episodes 51-100 | {len(evaluate)} | {budget} | {b0:g} | "
                     f"{lin.clicks} | {_fmt(ours)} | ({pub.get((camp, 'lin_bid'), '-')}) | "
                     f"({pub.get((camp, 'rlb'), '-')}) |")
        test_path = data_dir / f"{camp}.test.theta.txt"
        if test_path.exists():
            b0, lin, ours = _compare(val, read_log(test_path), info, budget, n, first_price)
            lines.append(f"| {camp} | **full test set** | {lin.auctions} | {budget} | {b0:g} | "
                         f"{lin.clicks} | {_fmt(ours)} | {pub.get((camp, 'lin_bid'), '-')} | "
                         f"{pub.get((camp, 'rlb'), '-')} |")
    return "\n".join(lines)


def one_campaign(data_dir: Path, camp: str, which: str, *, c0: float, n: int,
                 first_price: bool) -> str:
    paths = dataset_paths(data_dir, camp)
    info = read_info(paths["info"])
    budget = episode_budget(info.cpm_train, n, c0)
    val = read_log(paths["validation"])
    if which == "test":
        tune, evaluate = val, read_log(data_dir / f"{camp}.test.theta.txt")
    else:
        tune, evaluate = split(val, n)
    b0, lin, ours = _compare(tune, evaluate, info, budget, n, first_price)
    return "\n".join([
        f"campaign {camp} ({which}{'' if which == 'test' else ' episodes 51-100'}), budget {budget} "
        f"per {n}-auction episode; Lin b0={b0:g} (tuned), ours starts at the same level",
        _report("lin", lin), _report("ours", ours)])


def single_log(path: Path, budget: int, vpc: float, *, n: int, first_price: bool) -> str:
    strategy = PacedBid(vpc, update_every=REPLAY_UPDATE_EVERY, pacing=REPLAY_PACING)
    return _report("ours", replay(read_log(path), strategy, budget_per_episode=budget,
                                  n_per_episode=n, first_price=first_price))


def _report(name: str, r: ReplayResult) -> str:
    curve = " ".join(f"{100 * x:.0f}%" for x in r.budget_used_curve)
    return (f"{name:5s} auctions={r.auctions} impressions={r.impressions} clicks={r.clicks} "
            f"spend={r.spend} budget={r.budget} eCPC={r.ecpc:.2f} CPM={r.cpm:.2f} "
            f"win_rate={100 * r.win_rate:.2f}%\n      budget used at 10%..100% of episode: {curve}")
