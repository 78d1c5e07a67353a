"""Start-up safety: what ``dsp serve`` refuses and warns about; the keyed user hash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from dsp.config.snapshot import load_snapshot
from dsp.features.keys import DEV_USER_HASH_KEY, user_hash_key, user_key
from dsp.server.credentials import is_loopback, startup_problems, startup_warnings

ROOT = Path(__file__).resolve().parent.parent
SNAP = load_snapshot(ROOT / "bidder_configs")


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("") and not is_loopback("bidder.internal")


def test_several_processes_need_token_keys_unless_told() -> None:
    common = {"admin_host": "127.0.0.1", "env": {}}
    assert startup_problems(SNAP, workers=1, token_keys_set=False, ephemeral_token_key=False,
                            **common) == []  # type: ignore[arg-type]
    problems = startup_problems(SNAP, workers=2, token_keys_set=False, ephemeral_token_key=False,
                                **common)  # type: ignore[arg-type]
    assert len(problems) == 1 and "DSP_TOKEN_KEYS" in problems[0]
    assert startup_problems(SNAP, workers=2, token_keys_set=False, ephemeral_token_key=True,
                            **common) == []  # type: ignore[arg-type]
    assert startup_problems(SNAP, workers=2, token_keys_set=True, ephemeral_token_key=False,
                            **common) == []  # type: ignore[arg-type]


def test_admin_beyond_loopback_needs_a_token() -> None:
    kw = {"workers": 1, "token_keys_set": True, "ephemeral_token_key": False}
    problems = startup_problems(SNAP, admin_host="0.0.0.0", env={}, **kw)  # type: ignore[arg-type]
    assert len(problems) == 1 and "DSP_ADMIN_TOKEN" in problems[0]
    assert startup_problems(SNAP, admin_host="0.0.0.0", env={"DSP_ADMIN_TOKEN": "t"},
                            **kw) == []  # type: ignore[arg-type]


def test_open_profiles_and_dev_hash_key_warn_beyond_loopback() -> None:
    env = {"DSP_LENDER_QUICKLOAN_SECRET": "x", "DSP_LENDER_CASHBRIDGE_SECRET": "y"}
    assert startup_warnings(SNAP, host="127.0.0.1", token_keys_set=True, env=env) == []
    warnings = startup_warnings(SNAP, host="0.0.0.0", token_keys_set=True, env=env)
    opened = [w for w in warnings if "is open" in w]
    assert len(opened) == len(SNAP.exchanges)
    assert any("DSP_USER_HASH_KEY" in w for w in warnings)
    quiet = startup_warnings(SNAP, host="0.0.0.0", token_keys_set=True,
                             env={**env, "DSP_USER_HASH_KEY": "k" * 32})
    assert not any("DSP_USER_HASH_KEY" in w for w in quiet)
    assert any("DSP_LENDER_QUICKLOAN_SECRET" in w
               for w in startup_warnings(SNAP, host="127.0.0.1", token_keys_set=True, env={}))


def _serve(*args: str, env: dict[str, str] | None = None, configs: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DSP_TOKEN_KEYS", "DSP_ADMIN_TOKEN", "DSP_USER_HASH_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "dsp.cli", "serve", "--configs", str(configs or ROOT / "bidder_configs"),
         "--redis-url", "redis://127.0.0.1:1/0", *args],
        cwd=ROOT, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_dsp_serve_refuses_unsafe_starts(tmp_path: Path) -> None:
    out = _serve("--workers", "2")
    assert out.returncode == 2 and "DSP_TOKEN_KEYS" in out.stderr
    out = _serve("--admin-host", "0.0.0.0")
    assert out.returncode == 2 and "DSP_ADMIN_TOKEN" in out.stderr
    out = _serve(env={"DSP_USER_HASH_KEY": "short"})
    assert out.returncode == 2 and "DSP_USER_HASH_KEY" in out.stderr
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "bidder_configs", configs)
    profile = configs / "exchanges" / "generic.yaml"
    profile.write_text(profile.read_text() + "auth:\n  secret: {header: X-K, env: DSP_NOT_SET_XYZ}\n")
    out = _serve(configs=configs)
    assert out.returncode == 2 and "DSP_NOT_SET_XYZ" in out.stderr


def test_user_hash_is_keyed() -> None:
    assert user_key("device-1") == user_key("device-1", DEV_USER_HASH_KEY)
    secret = user_hash_key("a-production-secret-of-32-bytes!")
    assert user_key("device-1", secret) != user_key("device-1")
    assert user_key("device-1", secret).startswith("u:{") and len(user_key("device-1", secret)) == 20
    assert user_hash_key(None) == DEV_USER_HASH_KEY == user_hash_key("")
    assert len(user_hash_key("x" * 200)) == 64  # long values are hashed down to BLAKE2b's limit
    with pytest.raises(ValueError):
        user_hash_key("too-short")


def test_seed_and_serve_agree_on_the_key(redis_url: str, tmp_path: Path) -> None:
    """``dsp features load`` with DSP_USER_HASH_KEY writes the keys the server will compute."""
    rows = tmp_path / "users.jsonl"
    rows.write_text('{"id": "device-42", "features": {"late_night_share": 0.3}}\n')
    key = "a-production-secret-of-32-bytes!"
    env = {**os.environ, "DSP_USER_HASH_KEY": key}
    subprocess.run([sys.executable, "-m", "dsp.cli", "features", "load", str(rows),
                    "--redis-url", redis_url], cwd=ROOT, env=env, check=True, capture_output=True)
    r = sync_redis.Redis.from_url(redis_url)
    try:
        assert r.exists(user_key("device-42", user_hash_key(key)))
        assert not r.exists(user_key("device-42"))
    finally:
        r.close()
