"""``dsp features bench``: cost of one batched FeatureStore.fetch against a live Redis.

Assumes users were seeded with ``dsp features seed --seed S`` (ids ``syn<S>-…``). Prints, per
batch size, the best-of-N wall time per call and per user (one asyncio client, one process).
Timing lives here and in benchmarks, never in tests.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from dsp.clock import Deadline

REPEATS = 15


async def bench_fetch(url: str, seed: int, n_users: int, batch_sizes: tuple[int, ...],
                      seconds_per_size: float) -> list[tuple[int, float, float, float]]:
    """[(batch, µs per call, µs per user, share of known users)] for each batch size."""
    from dsp.features.connect import async_client
    from dsp.features.store import FeatureStore

    client = async_client(url, timeout_s=5.0)
    rng = np.random.default_rng(0)
    out: list[tuple[int, float, float, float]] = []
    store = FeatureStore(client)
    try:
        for batch in batch_sizes:
            ids = [f"syn{seed}-{i:08d}" for i in rng.integers(0, max(n_users, 1), size=batch)]
            for _ in range(20):
                records = await store.fetch(ids, Deadline.after_ms(1000))
            t0 = time.perf_counter()
            await store.fetch(ids, Deadline.after_ms(1000))
            calls = max(int(seconds_per_size / REPEATS / max(time.perf_counter() - t0, 1e-6)), 10)
            best = float("inf")
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                for _ in range(calls):
                    records = await store.fetch(ids, Deadline.after_ms(1000))
                best = min(best, (time.perf_counter() - t0) / calls)
            known = sum(r.known for r in records) / batch
            out.append((batch, best * 1e6, best * 1e6 / batch, known))
    finally:
        await store.aclose()
        await client.aclose()
    return out


def run(url: str, seed: int, n_users: int, batch_sizes: tuple[int, ...],
        seconds_per_size: float) -> int:
    rows = asyncio.run(bench_fetch(url, seed, n_users, batch_sizes, seconds_per_size))
    print(f"FeatureStore.fetch against {url} (best of {REPEATS} repetitions)")
    print("| users per call | µs per call | µs per user | known |")
    print("|---:|---:|---:|---:|")
    for batch, per_call, per_user, known in rows:
        print(f"| {batch} | {per_call:.0f} | {per_user:.1f} | {known:.0%} |")
    return 0 if all(k > 0 for *_, k in rows) else 1
