"""``dsp budget set/show`` against a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from dsp.budget.keys import campaign_day, day_key
from dsp.cli import main


def test_set_pins_and_show_prints(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "set", "c9", "--daily", "12.5", "--redis", redis_url]) == 0
    r = redis.Redis.from_url(redis_url)
    raw = r.hgetall(day_key("c9", campaign_day(time.time(), 0)))
    assert raw[b"budget"] == b"12500000" and raw[b"pinned"] == b"1"
    out = capsys.readouterr().out
    assert "budget     12.500000" in out and "(pinned)" in out
    assert main(["budget", "set", "c9", "--unpin", "--redis", redis_url]) == 0
    assert not r.hexists(day_key("c9", campaign_day(time.time(), 0)), "pinned")
    assert main(["budget", "set", "c9", "--daily", "-1", "--redis", redis_url]) == 2
    assert main(["budget", "show", "c9", "--redis", redis_url]) == 0


def test_unreachable_redis_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from dsp.testing.redis_server import free_port

    assert main(["budget", "show", "c9", "--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 1
    assert "dsp budget: Redis at" in capsys.readouterr().err


def test_show_prints_the_plan_guard_and_open_bids(redis_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    r = redis.Redis.from_url(redis_url)
    key = day_key("c8", campaign_day(time.time(), 0))
    r.hset(key, mapping={"budget": 300_000_000, "spent": 1_000_000, "out": 400_000,
                         "plan": "1234567.5", "allow": 300_000, "lease:abc": 400_000,
                         "resv:abc": 150_000, "lexp:abc": int(time.time() * 1000) + 10_000})
    assert main(["budget", "show", "c8", "--redis", redis_url]) == 0
    out = capsys.readouterr().out
    assert "plan guard 1.234567 + allowance 0.300000" in out
    assert "lease abc  0.400000  (open bids 0.150000)" in out
