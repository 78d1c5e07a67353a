"""Readers for the iPinYou market-price logs of ``han-cai/rlb-dp`` (see the dataset's SOURCE.md).

The files are non-commercial research data: read them from their folder (or a path argument);
never copy them into the repository. Tests generate small synthetic files in the same formats.

* ``<camp>.validation.txt``: first line ``<dim>\\t<N>``; then episodes, each introduced by a line
  holding only its number, followed by N lines ``click\\tmarket_price\\tpCTR``.
* ``<camp>.test.theta.txt`` / ``test.theta.txt``: lines ``click market_price pCTR``, no header.
* ``campaign_info/<camp>.info.json``: ``imp_train``, ``clk_train``, ``cost_train`` (and test).

Prices are iPinYou integer CPM prices (≤ 300 here). The replay keeps them in those units.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

CAMPAIGNS = ("1458", "2259", "2261", "2821", "2997", "3358", "3386", "3427", "3476")


class MarketLog(msgspec.Struct, frozen=True):
    """Auctions in log order: click (0/1), market price, the logged pCTR."""

    clicks: npt.NDArray[np.int8]
    prices: npt.NDArray[np.int32]
    pctr: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.prices.shape[0])


class CampaignInfo(msgspec.Struct, frozen=True):
    imp_train: int
    clk_train: int
    cost_train: int

    @property
    def cpm_train(self) -> float:
        """Mean market price per impression of the training logs (price units)."""
        return self.cost_train / self.imp_train

    @property
    def ctr_train(self) -> float:
        return self.clk_train / self.imp_train


def _from_rows(rows: list[tuple[int, int, float]]) -> MarketLog:
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return MarketLog(clicks=arr[:, 0].astype(np.int8), prices=arr[:, 1].astype(np.int32),
                     pctr=arr[:, 2].copy())


def read_validation(path: Path) -> MarketLog:
    """Read an episodes file (validation format); episode markers are dropped, order kept."""
    rows: list[tuple[int, int, float]] = []
    with path.open() as fh:
        fh.readline()  # "<dim>\t<N>"
        for line in fh:
            parts = line.split()
            if len(parts) == 3:
                rows.append((int(parts[0]), int(parts[1]), float(parts[2])))
            elif len(parts) > 1:
                raise ValueError(f"{path}: unexpected line {line[:60]!r}")
    return _from_rows(rows)


def read_theta(path: Path) -> MarketLog:
    """Read a flat ``click price pCTR`` file (test.theta format)."""
    rows: list[tuple[int, int, float]] = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected 'click price pCTR'")
            rows.append((int(parts[0]), int(parts[1]), float(parts[2])))
    return _from_rows(rows)


def read_log(path: Path) -> MarketLog:
    """Either format, told apart by the first line (two fields = validation header)."""
    with path.open() as fh:
        first = fh.readline().split()
    return read_validation(path) if len(first) == 2 else read_theta(path)


def read_info(path: Path) -> CampaignInfo:
    raw = json.loads(path.read_text())
    return CampaignInfo(imp_train=int(raw["imp_train"]), clk_train=int(raw["clk_train"]),
                        cost_train=int(raw["cost_train"]))


def dataset_paths(data_dir: Path, campaign: str) -> dict[str, Path]:
    """Where the dataset folder keeps one campaign's files (some may not exist)."""
    return {"validation": data_dir / "validation_100k" / f"{campaign}.validation.txt",
            "test": data_dir / f"{campaign}.test.theta.txt",
            "info": data_dir / "campaign_info" / f"{campaign}.info.json"}
