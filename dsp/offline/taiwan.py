"""The UCI Taiwan credit-default data as contract credit features (numpy only, no pandas).

Source: "default of credit card clients", Yeh, I.-C. & Lien, C.-H. (2009), Expert Systems with
Applications 36(2):2473-2480; UCI ML Repository id 350, DOI 10.24432/C55S3H. 30,000 rows. The
file is read from the shared datasets directory (``../shared/datasets`` relative to the repo, or
``--data-dir``); no copy is shipped in this repository.

:class:`TaiwanData` keeps the protected columns (SEX, MARRIAGE, AGE) *apart* from the credit
features: they are used only by the fair-lending evaluation and by the synthetic world, never as
model inputs. EDUCATION is kept for the record but is not a contract feature.

:func:`split_indices` is the one train/test split used by training, evaluation and tests: a
stratified permutation driven by a seed, so the held-out rows can be rebuilt anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dsp.features.contract import CREDIT_FEATURES

TAIWAN_DIR = "uci-taiwan-default-credit-card"
TAIWAN_FILE = "default_of_credit_card_clients.tsv"
LABEL_COLUMN = "default payment next month"
_PAY_COLUMNS = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


DATA_DIR_ENV = "DSP_DATASETS_DIR"


def default_data_dir() -> Path:
    """``$DSP_DATASETS_DIR`` if set, else ``<repo>/../shared/datasets`` (shared, read-only)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


class TaiwanData:
    """The 30,000 rows: credit features (contract order of CREDIT_FEATURES), label, protected cols."""

    __slots__ = ("age", "credit", "education", "label", "marriage", "row_id", "sex")

    def __init__(self, credit: FloatArray, label: IntArray, sex: IntArray, age: IntArray,
                 marriage: IntArray, education: IntArray, row_id: IntArray) -> None:
        self.credit = credit
        self.label = label
        self.sex = sex
        self.age = age
        self.marriage = marriage
        self.education = education
        self.row_id = row_id

    def __len__(self) -> int:
        return int(self.label.shape[0])


def load_taiwan(data_dir: Path | None = None) -> TaiwanData:
    """Parse the TSV; raise FileNotFoundError with the path tried when it is absent."""
    path = (data_dir or default_data_dir()) / TAIWAN_DIR / TAIWAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"UCI Taiwan credit data not found at {path} (see --data-dir)")
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        table = np.loadtxt(fh, delimiter="\t", dtype=np.float64, ndmin=2)
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in ("ID", "LIMIT_BAL", "SEX", "AGE", LABEL_COLUMN) if c not in col]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")

    def c(name: str) -> npt.NDArray[np.float64]:
        return table[:, col[name]]

    return TaiwanData(
        credit=credit_block(
            limit_bal=c("LIMIT_BAL"),
            pay=np.column_stack([c(p) for p in _PAY_COLUMNS]),
            bill=np.column_stack([c(f"BILL_AMT{i}") for i in range(1, 7)]),
            paid=np.column_stack([c(f"PAY_AMT{i}") for i in range(1, 7)]),
        ),
        label=c(LABEL_COLUMN).astype(np.int64),
        sex=c("SEX").astype(np.int64),
        age=c("AGE").astype(np.int64),
        marriage=c("MARRIAGE").astype(np.int64),
        education=c("EDUCATION").astype(np.int64),
        row_id=c("ID").astype(np.int64),
    )


def credit_block(limit_bal: npt.NDArray[np.float64], pay: npt.NDArray[np.float64],
                 bill: npt.NDArray[np.float64], paid: npt.NDArray[np.float64]) -> FloatArray:
    """Raw Taiwan columns -> the contract's credit block (has_credit_history = 1, derived ratios)."""
    n = limit_bal.shape[0]
    out = np.empty((n, len(CREDIT_FEATURES)), dtype=np.float64)
    out[:, 0] = 1.0
    out[:, 1] = limit_bal
    out[:, 2:8] = pay
    out[:, 8:14] = bill
    out[:, 14:20] = paid
    out[:, 20] = bill[:, 0] / np.maximum(limit_bal, 1.0)
    out[:, 21] = paid[:, 0] / np.maximum(bill[:, 0], 1.0)
    out[:, 22] = pay.max(axis=1)
    out[:, 23] = (pay > 0).sum(axis=1)
    return out.astype(np.float32)


def split_indices(label: IntArray, *, test_fraction: float, seed: int) -> tuple[IntArray, IntArray]:
    """Stratified train/test split of row indices (sorted), deterministic in ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
    train: list[IntArray] = []
    test: list[IntArray] = []
    for cls in np.unique(label):
        idx = np.flatnonzero(label == cls)
        idx = idx[rng.permutation(idx.shape[0])]
        n_test = round(idx.shape[0] * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def age_band(age: IntArray) -> npt.NDArray[np.str_]:
    """Fair-lending reporting bands: <25, 25-34, 35-44, 45-54, 55+."""
    edges = np.array([25, 35, 45, 55])
    names = np.array(["<25", "25-34", "35-44", "45-54", "55+"])
    return names[np.searchsorted(edges, age, side="right")]
