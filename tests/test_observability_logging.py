"""Structured JSON logs and the sampled, rate-limited decision log."""

from __future__ import annotations

import io
import json
import logging
import random

import msgspec
from prometheus_client import CollectorRegistry

from dsp.observability.logging import DecisionLog, JsonFormatter, configure_json_logging
from dsp.observability.metrics import Metrics
from dsp.openrtb.nobid import NoBidReason


class _Rec(msgspec.Struct):
    request_id: str
    reason: NoBidReason
    price_micros: int


def _capture() -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.decisions.{id(buf)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, buf


def test_json_lines_carry_fields_and_exceptions() -> None:
    logger, buf = _capture()
    logger.info("started %s", "ok", extra={"fields": {"port": 8080, "tags": {"b", "a"}}})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    first, second = (json.loads(line) for line in buf.getvalue().splitlines())
    assert first["msg"] == "started ok" and first["port"] == 8080 and first["tags"] == ["a", "b"]
    assert first["level"] == "INFO" and first["ts"].endswith("+00:00") and first["pid"] > 0
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]


def test_configure_json_logging_is_idempotent() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        buf = io.StringIO()
        configure_json_logging("INFO", buf)
        configure_json_logging("INFO", buf)
        assert sum(h.get_name() == "dsp-json" for h in root.handlers) == 1
        logging.getLogger("dsp.x").info("hello")
        assert json.loads(buf.getvalue().splitlines()[-1])["logger"] == "dsp.x"
    finally:
        root.handlers[:] = before
        root.setLevel(level)


def test_decision_records_are_sampled_at_the_rate() -> None:
    logger, buf = _capture()
    metrics = Metrics(CollectorRegistry())
    log = DecisionLog(sample_rate=0.1, max_per_s=1e9, logger=logger, metrics=metrics,
                      rng=random.Random(3))
    logged = sum(log.maybe_log(_Rec(f"r{i}", NoBidReason.BELOW_FLOOR, 1500)) for i in range(5000))
    assert 400 < logged < 600
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == logged
    assert lines[0]["msg"] == "decision" and lines[0]["decision"]["reason"] == "below_floor"
    assert metrics.decision_logs.labels("logged")._value.get() == logged


def test_rate_limit_caps_volume_per_second() -> None:
    logger, _buf = _capture()
    now = [100.0]
    metrics = Metrics(CollectorRegistry())
    log = DecisionLog(sample_rate=1.0, max_per_s=5, logger=logger, metrics=metrics,
                      clock=lambda: now[0])
    assert sum(log.maybe_log({"i": i}) for i in range(20)) == 5  # burst of one second's worth
    now[0] += 1.0
    assert sum(log.maybe_log({"i": i}) for i in range(20)) == 5
    assert metrics.decision_logs.labels("rate_limited")._value.get() == 30


def test_unencodable_record_never_raises() -> None:
    logger, buf = _capture()
    log = DecisionLog(sample_rate=1.0, logger=logger)
    log.log({"bad": object()})
    line = json.loads(buf.getvalue())
    assert line["level"] == "ERROR" and "not encodable" in line["msg"]


def test_unsortable_set_is_still_logged() -> None:
    logger, buf = _capture()
    logger.info("mixed", extra={"fields": {"tags": {1, "a"}}})
    line = json.loads(buf.getvalue().splitlines()[0])
    assert sorted(map(str, line["tags"])) == ["1", "a"]


async def test_http_library_logs_carry_no_client_address_or_raw_bytes(redis_url: str) -> None:
    """A malformed request makes aiohttp log "Error handling request from <ip>" with a traceback
    quoting the bytes; after configure_json_logging neither reaches the output."""
    import asyncio
    import logging
    from pathlib import Path

    from prometheus_client import CollectorRegistry

    from dsp.observability.metrics import Metrics
    from dsp.server.app import build_app
    from dsp.server.settings import Settings
    from dsp.testing.serve import serving

    root = Path(__file__).resolve().parent.parent
    buf = io.StringIO()
    handler = configure_json_logging("INFO", buf)
    try:
        for transport in ("front", "aiohttp"):
            settings = Settings(redis_url=redis_url, configs_dir=str(root / "bidder_configs"),
                                models_dir=str(root / "models"), transport=transport,
                                reload_check_s=3600, token_active="k1",
                                token_keys={"k1": b"0123456789abcdef0123456789"})
            async with serving(build_app(settings, Metrics(CollectorRegistry())), settings) as url:
                port = int(url.rsplit(":", 1)[1])
                for raw in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Secret-Marker\x01: zz\r\n\r\n",
                            b"POST /notice/click HTTP/1.1\r\nHost: x\r\nContent-Length: nope-marker\r\n\r\n"):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(raw)
                    answer = await asyncio.wait_for(reader.read(), timeout=10)
                    writer.close()
                    assert answer.split(b"\r\n", 1)[0].endswith(b"400 Bad Request"), answer[:60]
    finally:
        logging.getLogger().removeHandler(handler)
    out = buf.getvalue()
    assert "Error handling request" in out  # the event is still logged...
    assert "127.0.0.1" not in out and "marker" not in out.lower()  # ...without who or what
