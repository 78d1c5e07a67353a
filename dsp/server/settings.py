"""Process settings: where to listen, Redis, config and model paths, limits, notice secrets.

Built once by ``dsp serve`` from arguments and the environment and handed to every worker (it is
picklable). Secrets come from the environment only:

* ``DSP_TOKEN_KEYS`` — ``kid:hexkey[,kid:hexkey...]``, the first is active (keys ≥ 16 bytes);
  unset: a random key is made at start-up and shared by this server's workers (notices then do
  not survive a restart or verify on another replica — fine for a demo, not for production;
  ``dsp serve`` refuses more than one process without it unless ``--ephemeral-token-key``).
* ``DSP_PUBLIC_URL`` — the base URL exchanges use for notices (default ``http://HOST:PORT``).
* ``DSP_EVENTS_HASH_KEY`` — hex key (≥ 16 bytes) of the keyed user hash in the event log; unset:
  derived from the active notice-token key (stable while that key is).
* ``DSP_USER_HASH_KEY`` — the user-id hash key (:mod:`dsp.features.keys`).
* ``DSP_ADMIN_TOKEN`` — the admin port's bearer token (:mod:`dsp.server.admin`), read at start.

:mod:`dsp.server.credentials` holds the start-up checks on all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import msgspec

from dsp.features.connect import DEFAULT_REDIS_URL
from dsp.features.keys import DEV_USER_HASH_KEY

TOKEN_KEYS_ENV = "DSP_TOKEN_KEYS"
PUBLIC_URL_ENV = "DSP_PUBLIC_URL"
EVENTS_HASH_KEY_ENV = "DSP_EVENTS_HASH_KEY"


TRANSPORTS = ("front", "aiohttp")  # dsp serve --transport


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    redis_url: str = DEFAULT_REDIS_URL
    redis_cluster: bool = False  # True: redis_url names a seed node of a Redis Cluster
    configs_dir: str = "bidder_configs"
    models_dir: str = "models"
    public_url: str = ""
    max_body_bytes: int = 256 * 1024
    reload_check_s: float = 2.0
    health_check_s: float = 1.0
    token_keys: dict[str, bytes] = {}
    token_active: str = ""
    batches_in_flight: int = 1  # audience batches out at once (>1 overlaps Redis with scoring)
    gc_tuning: bool = True  # freeze start-up objects, fewer young collections (see dsp serve)
    score_in_thread: bool = False  # True: ONNX runs in one thread off the event loop (GIL released)
    decision_sample_rate: float = 0.001  # share of decisions logged (dsp.decisions logger)
    admin_host: str = "127.0.0.1"  # /metrics and /admin/* (dsp.server.admin); never the bid port
    admin_port: int | None = None  # None: this process serves no admin port (tests; the workers
    #                                of a supervisor, which owns it); 0: a free port
    features_hash_key: bytes = DEV_USER_HASH_KEY  # DSP_USER_HASH_KEY: the features keys (dsp.features.keys)
    transport: str = "front"  # one of TRANSPORTS: "front" (lean HTTP/1.1 front for bids + aiohttp
    #                           for the rest) or "aiohttp" (aiohttp for everything)
    keepalive_timeout_s: float = 75.0  # idle keep-alive connections close after this
    request_timeout_s: float = 10.0  # a request (head + body) not complete this long after its
    #                                  first byte is answered 408 and closed (total, not per byte)
    max_connections: int = 4096  # per worker; past it a new connection gets 503 and is closed
    shedding: bool = True  # False: never shed (dsp serve --no-shedding; for comparisons)
    shed_late_share: float = 0.5  # shed a request that waited more than this share of its budget
    shed_lag_share: float = 0.15  # shed new requests while the loop lags more than this share
    max_inflight: int = 1024  # shed new requests while this many are inside the bid flow
    shutdown_grace_s: float = 10.0  # SIGTERM: in-flight requests get this long to answer
    events_enabled: bool = True  # bids, outcomes, config loads and a request sample -> streams
    events_redis_url: str = ""  # "" = the redis_url above
    events_redis_cluster: bool = False
    events_sample_rate: float = 0.01  # share of all bid requests kept as request samples
    events_hash_key: bytes = b""  # keyed user hash (DSP_EVENTS_HASH_KEY); b"" = derived
    events_shards: int = 16
    events_tick_s: float = 0.02  # one pipelined flush per tick
    events_max_buffer: int = 200_000  # events held while Redis is slow; beyond: dropped, counted
    events_maxlen_entries: int = 2_000  # per shard stream, approximate (docs/operations.md sizing)

    @property
    def user_hash_key(self) -> bytes:
        """The event log's user-hash key: the configured one, else one derived from the active
        notice-token key (so every worker of a deployment hashes alike)."""
        if self.events_hash_key:
            return self.events_hash_key
        base = self.token_keys.get(self.token_active, b"dsp-unkeyed")
        return hmac.new(base, b"dsp events user hash", hashlib.sha256).digest()[:32]

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def parse_token_keys(text: str) -> tuple[dict[str, bytes], str]:
    """``"k2:00ff...,k1:..."`` -> ({kid: key}, active kid). Raises ValueError when malformed."""
    keys: dict[str, bytes] = {}
    active = ""
    for part in text.split(","):
        kid, sep, hexkey = part.strip().partition(":")
        if not sep or not kid:
            raise ValueError(f"{TOKEN_KEYS_ENV}: expected kid:hexkey, got {part!r}")
        key = bytes.fromhex(hexkey)
        if len(key) < 16:
            raise ValueError(f"{TOKEN_KEYS_ENV}: key {kid!r} is shorter than 16 bytes")
        keys[kid] = key
        active = active or kid
    return keys, active


def events_hash_key_from_env() -> bytes:
    """``DSP_EVENTS_HASH_KEY`` as bytes (b"" when unset). Raises ValueError when malformed."""
    text = os.environ.get(EVENTS_HASH_KEY_ENV, "").strip()
    if not text:
        return b""
    key = bytes.fromhex(text)
    if not 16 <= len(key) <= 64:
        raise ValueError(f"{EVENTS_HASH_KEY_ENV}: key must be 16 to 64 bytes")
    return key


def token_keys_from_env() -> tuple[dict[str, bytes], str]:
    """Keys from ``DSP_TOKEN_KEYS``, or one fresh random key (kid ``"r1"``)."""
    text = os.environ.get(TOKEN_KEYS_ENV, "").strip()
    if text:
        return parse_token_keys(text)
    return {"r1": secrets.token_bytes(32)}, "r1"
