"""``dsp config``: validate, diff, preview and reload the bidder configuration.

    dsp config validate [--configs DIR]                 every problem, with file and path (exit 2),
                                                        then the fair-lending gate: adverse-impact
                                                        ratio per campaign by sex and age band on
                                                        the reference population (exit 2 below 0.8)
    dsp config schema [--out DIR]                       write the editor JSON Schemas (campaign,
                                                        exchange, currency) into DIR/<kind>.json
    dsp config diff --from OLD_DIR [--configs DIR]      field-level changes between two trees
    dsp config preview --from OLD_DIR [--configs DIR]   replay the corpus and story fixtures through
                                                        both and show how each campaign's bids change
    dsp config reload [--url http://127.0.0.1:9090]     ask a running bidder to reload (POST
                      [--pid PID]                       /admin/reload, or SIGHUP to the serve process)

A running bidder also picks up edits by itself (it checks the files every few seconds); a reload
that fails validation keeps the last good snapshot and logs every problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dsp.cli.common import configs_default, snapshot_or_none

DEFAULT_CONFIGS = configs_default()


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = sub.add_parser("validate", help="validate a config tree; list every problem")
    v.add_argument("--configs", default=DEFAULT_CONFIGS)
    add_fairness_args(v)
    v.set_defaults(func=_validate)
    s = sub.add_parser("schema", help="write JSON Schemas of the config files (for editors)")
    s.add_argument("--out", default=None, help="folder (default: <configs>/schema)")
    s.add_argument("--configs", default=DEFAULT_CONFIGS)
    s.set_defaults(func=_schema)
    d = sub.add_parser("diff", help="what changed between two config trees")
    d.add_argument("--from", dest="old", required=True, help="the current (baseline) config tree")
    d.add_argument("--configs", default=DEFAULT_CONFIGS, help="the edited config tree")
    d.set_defaults(func=_diff)
    p = sub.add_parser("preview", help="replay sample requests through both trees")
    p.add_argument("--from", dest="old", required=True, help="the current (baseline) config tree")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="the edited config tree")
    p.add_argument("--corpus", default=None,
                   help="root of OpenRTB request folders (default: the shared corpus)")
    p.add_argument("--fixtures", default="tests/fixtures/bidding", help="story fixtures folder")
    p.add_argument("--p-intent", type=float, default=0.05, help="score of the corpus requests' user")
    p.add_argument("--pd", type=float, default=0.15, help="probability of default of that user")
    add_fairness_args(p)
    p.set_defaults(func=_preview)
    r = sub.add_parser("reload", help="make a running bidder reload its config")
    r.add_argument("--url", default=os.environ.get("DSP_ADMIN_URL", "http://127.0.0.1:9090"))
    r.add_argument("--pid", type=int, default=None,
                   help="send SIGHUP to this dsp serve process instead")
    r.set_defaults(func=_reload)


def add_fairness_args(parser: argparse.ArgumentParser) -> None:
    """Options of the fair-lending gate (validate, preview, forecast)."""
    parser.add_argument("--models", default=os.environ.get("DSP_MODELS", "models"),
                        help="model directory scoring the reference population")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="datasets root holding the UCI Taiwan data (default: ../shared/datasets)")
    parser.add_argument("--skip-fairness", action="store_true",
                        help="skip the fair-lending gate (syntax checks only; never before a deploy)")


def fair_lending(snaps: list[tuple[str, object]], args: argparse.Namespace) -> int:
    """Print the adverse-impact ratios of each (label, snapshot); return the number of problems
    of the last one (the config that would ship). A missing reference population is a problem."""
    from dsp.config.snapshot import Snapshot
    from dsp.offline.fairlending import assess, gate_problems, load_reference, render

    if args.skip_fairness:
        print("fair-lending gate: SKIPPED (--skip-fairness)")
        return 0
    try:
        ref = load_reference(Path(args.models), args.data_dir)
    except (FileNotFoundError, OSError) as exc:
        print(f"fair-lending gate: cannot build the reference population: {exc}", file=sys.stderr)
        return 1
    problems = []
    for label, snap in snaps:
        assert isinstance(snap, Snapshot)
        results = assess(snap, ref)
        print((f"[{label}] " if label else "") + render(results, ref.source))
        problems = gate_problems(results, snap.files)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return len(problems)


def _load(path: str) -> object:
    return snapshot_or_none(path)


def _validate(args: argparse.Namespace) -> int:
    from dsp.config.snapshot import Snapshot

    snap = _load(args.configs)
    if not isinstance(snap, Snapshot):
        return 2
    print(f"{args.configs}: OK (version {snap.version})")
    for c in snap.campaigns:
        print(f"  campaign {c.id}: {c.currency} max_cpm {c.max_cpm_micros / 1e6:.2f}, "
              f"pd_max {c.pd_max}, intent_min {c.intent_min}, "
              f"daily budget {c.budget.daily_budget_micros / 1e6:.2f}, {len(c.banners)} banner sizes")
    for name, e in sorted(snap.exchanges.items()):
        print(f"  exchange {name}: {e.currency}, at={e.auction_type}, tmax {e.tmax_default_ms} ms "
              f"- {e.round_trip_allowance_ms} ms allowance, lax_numbers={e.lax_numbers}")
    if fair_lending([("", snap)], args):
        print(f"{args.configs}: fails the fair-lending gate", file=sys.stderr)
        return 2
    return 0


def _schema(args: argparse.Namespace) -> int:
    from dsp.config.jsonschema import write_schemas

    out = Path(args.out) if args.out else Path(args.configs) / "schema"
    for path in write_schemas(out):
        print(f"wrote {path}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from dsp.config.diff import diff_snapshots
    from dsp.config.snapshot import Snapshot

    old, new = _load(args.old), _load(args.configs)
    if not isinstance(old, Snapshot) or not isinstance(new, Snapshot):
        return 2
    changes = diff_snapshots(old, new)
    if not changes:
        print("no changes")
    for change in changes:
        print(change)
    return 0


def _preview(args: argparse.Namespace) -> int:
    import json

    from dsp.bidding.audience import Audience
    from dsp.clock import wall_time
    from dsp.config.snapshot import Snapshot
    from dsp.errors import InvalidRequest
    from dsp.offline.preview import Sample, preview, render_preview
    from dsp.openrtb.decode import RequestDecoder

    old, new = _load(args.old), _load(args.configs)
    if not isinstance(old, Snapshot) or not isinstance(new, Snapshot):
        return 2
    decoder = RequestDecoder()
    samples: list[Sample] = []
    default_corpus = Path(__file__).resolve().parents[2].parent / "shared" / "openrtb-corpus"
    corpus = Path(args.corpus) if args.corpus else default_corpus
    typical = Audience("u:{preview}", True, args.p_intent, args.pd, {})
    for path in sorted(corpus.glob("*/*.json")):
        try:
            samples.append(Sample(path.stem, "generic", decoder.decode(path.read_bytes()), typical))
        except InvalidRequest:
            continue
    for path in sorted(Path(args.fixtures).glob("*.json")):
        story = json.loads(path.read_text())
        user = story.get("user", {})
        pop = story.get("population", {"p_intent": 0.0, "pd": 1.0})
        aud = (Audience("u:{story}", True, user["p_intent"], user["pd"], {}) if user.get("known")
               else Audience("", False, pop["p_intent"], pop["pd"], {}))
        try:
            req = decoder.decode(json.dumps(story["request"]).encode())
        except InvalidRequest:
            continue
        samples.append(Sample(path.stem, story.get("exchange", "generic"), req, aud))
    print(render_preview(preview(old, new, samples, wall_time())))
    return 2 if fair_lending([("old", old), ("new", new)], args) else 0


def _reload(args: argparse.Namespace) -> int:
    import json
    import signal
    import urllib.error
    import urllib.request

    if args.pid is not None:
        os.kill(args.pid, signal.SIGHUP)
        print(f"sent SIGHUP to {args.pid} (workers reload; check the logs for problems)")
        return 0
    headers = {"Authorization": f"Bearer {os.environ['DSP_ADMIN_TOKEN']}"} \
        if os.environ.get("DSP_ADMIN_TOKEN") else {}
    req = urllib.request.Request(args.url.rstrip("/") + "/admin/reload", method="POST", data=b"",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except OSError as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if body.get("ok"):
        print(f"reloaded: version {body.get('version')} (changed: {body.get('changed')})")
        return 0
    print(f"reload failed, still serving version {body.get('version')}:", file=sys.stderr)
    for problem in body.get("problems", []):
        print(f"  {problem}", file=sys.stderr)
    return 2
