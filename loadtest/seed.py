"""Seed demo users into Redis and write the ids file the traffic generator reads (JSON lines).

Prefers the project's command, ``dsp features seed --users N --seed S --ids-out FILE
--redis-url URL``; when that command is not available in this checkout it writes the same
population through the feature store's own library (dsp.offline.population + writer).

    python -m loadtest.seed --users 20000 --seed 7 --ids-out /tmp/ids.jsonl --redis-url redis://...
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def seed_command_available() -> bool:
    return importlib.util.find_spec("dsp.cli.features") is not None


def seed_users(redis_url: str, users: int, seed: int, ids_out: str | os.PathLike[str]) -> str:
    """Seed ``users`` users; returns how it was done ("dsp features seed" or "library")."""
    if seed_command_available():
        subprocess.run([sys.executable, "-m", "dsp.cli", "features", "seed", "--users", str(users),
                        "--seed", str(seed), "--ids-out", str(ids_out), "--redis-url", redis_url],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        return "dsp features seed"
    import redis

    from dsp.features.writer import write_rows
    from dsp.offline.population import generate
    from dsp.offline.taiwan import load_taiwan

    pop = generate(users, seed, load_taiwan())
    client = redis.Redis.from_url(redis_url)
    try:
        write_rows(client, pop.ids, pop.features)
    finally:
        client.close()
    with open(ids_out, "w", encoding="utf-8") as fh:
        for uid in pop.ids:
            fh.write(json.dumps({"id": uid}) + "\n")
    return "library"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ids-out", required=True)
    p.add_argument("--redis-url", required=True)
    args = p.parse_args(argv)
    how = seed_users(args.redis_url, args.users, args.seed, args.ids_out)
    print(f"seeded {args.users} users via {how}; ids in {args.ids_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
