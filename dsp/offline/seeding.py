"""Bulk writers behind ``dsp features seed`` and ``dsp features load`` (synchronous redis)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import numpy as np

from dsp.features.contract import FEATURE_INDEX
from dsp.features.keys import user_hash_key_from_env, user_key
from dsp.features.record import RecordCodec
from dsp.features.rows import RowError, parse_row
from dsp.features.writer import connect, write_blobs, write_rows
from dsp.offline.population import CHUNK_USERS, generate
from dsp.offline.taiwan import load_taiwan

LOAD_BATCH = 5000


class IdLine(msgspec.Struct):
    """One line of ``--ids-out``."""

    id: str
    true_intent: float
    true_pd: float
    has_credit_history: int
    defaulted: int


def seed_population(url: str, n_users: int, seed: int, *, ids_out: Path | None = None,
                    data_dir: Path | None = None, cluster: bool = False) -> int:
    """Write users 0..n-1 of the population for ``seed``; returns how many were written."""
    data = load_taiwan(data_dir)
    client = connect(url, cluster)
    encoder = msgspec.json.Encoder()
    written = 0
    hist_col = FEATURE_INDEX["has_credit_history"]
    try:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(ids_out.open("wb")) if ids_out is not None else None
            for start in range(0, n_users, CHUNK_USERS):
                pop = generate(min(CHUNK_USERS, n_users - start), seed, data, start=start)
                written += write_rows(client, pop.ids, pop.features,
                                      hash_key=user_hash_key_from_env())
                if out is not None:
                    hist = pop.features[:, hist_col].astype(np.int64).tolist()
                    lines = [IdLine(i, round(t, 6), round(p, 6), h, d) for i, t, p, h, d in zip(
                        pop.ids, pop.true_intent.tolist(), pop.pd_ref.tolist(), hist,
                        pop.defaulted.tolist(), strict=True)]
                    out.write(encoder.encode_lines(lines))
    finally:
        client.close()
    return written


def load_file(url: str, path: Path, *, cluster: bool = False) -> tuple[int, list[tuple[int, str]]]:
    """Load every valid line of a JSON-lines file; return (loaded, [(line number, error)])."""
    codec = RecordCodec()
    hash_key = user_hash_key_from_env()  # the server's DSP_USER_HASH_KEY: both must agree
    errors: list[tuple[int, str]] = []
    batch: list[tuple[str, bytes]] = []
    loaded = 0
    client = connect(url, cluster)
    try:
        with path.open("rb") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw_id, vec = parse_row(line)
                except RowError as exc:
                    errors.append((line_no, str(exc)))
                    continue
                batch.append((user_key(raw_id, hash_key), codec.encode(vec)))
                if len(batch) >= LOAD_BATCH:
                    loaded += write_blobs(client, batch)
                    batch = []
        if batch:
            loaded += write_blobs(client, batch)
    finally:
        client.close()
    return loaded, errors

