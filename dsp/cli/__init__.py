"""The ``dsp`` command. Every subcommand is registered here, explicitly, in one table.

Each entry names a module exposing ``configure(parser: argparse.ArgumentParser) -> None``, which
adds its arguments (and sub-subcommands) and sets ``func`` via ``parser.set_defaults(func=...)``;
``func(args) -> int`` is the exit code. Command modules import heavy libraries inside ``func`` so
that ``dsp --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (subcommand, module, one-line help). The one place commands are registered.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "dsp.cli.serve", "serve OpenRTB bids over HTTP (N processes on one port)"),
    ("explain", "dsp.cli.explain", "explain, per imp and campaign, what the bidder would do"),
    ("config", "dsp.cli.config", "validate campaign/exchange config, preview a change, reload"),
    ("features", "dsp.cli.features", "seed or load user features into Redis"),
    ("models", "dsp.cli.models", "train, evaluate and benchmark the ONNX models"),
    ("budget", "dsp.cli.budget", "inspect and set campaign budgets in Redis"),
    ("replay", "dsp.cli.replay", "replay market-price logs through pricing and pacing"),
    ("events", "dsp.cli.events", "move the event log from Redis streams into Parquet files"),
    ("report", "dsp.cli.report", "bids, wins, spend, clicks and funded loans from the event log"),
    ("traffic", "dsp.cli.traffic", "refresh bot and data-centre lists; check a user agent or IP"),
    ("forecast", "dsp.cli.forecast", "forecast a config change on the logged traffic (old vs new)"),
    ("console", "dsp.cli.console", "the campaign console in the browser (its own port)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsp", description="Real-time bidding DSP for consumer-lending acquisition.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)  # a missing module fails loudly, never skipped
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
