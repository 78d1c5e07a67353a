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
