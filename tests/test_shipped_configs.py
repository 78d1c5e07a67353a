"""The ONE test of marketing's shipped ``bidder_configs/``: it loads, cross-checks and compiles.

Every other test reads its own copy under ``tests/fixtures/configs/`` so that a campaign edit
fails here, once, with every problem listed (file, path, message), and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from dsp.config.loader import load_dir
from dsp.config.snapshot import compile_snapshot
from dsp.errors import ConfigInvalid

SHIPPED = Path(__file__).resolve().parent.parent / "bidder_configs"


def test_shipped_bidder_configs_are_valid() -> None:
    raw, problems = load_dir(SHIPPED)
    if raw is not None:
        try:
            snapshot = compile_snapshot(raw)
        except ConfigInvalid as exc:
            problems = list(exc.problems)
        else:
            assert snapshot.campaigns and snapshot.exchanges, "no enabled campaign or exchange"
    assert not problems, "bidder_configs/ has problems:\n" + "\n".join(f"  {p}" for p in problems)
