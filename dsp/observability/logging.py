"""Structured JSON logs, and sampled decision records.

Every log line is one JSON object: ``ts`` (RFC 3339, UTC, ms), ``level``, ``logger``, ``msg``,
``pid``, then any fields passed with ``extra={"fields": {...}}`` (anything msgspec can encode:
dicts, Structs, enums, ...), and ``exc`` for exceptions.

    configure_json_logging(level="INFO")             # once per process, at start-up
    log = logging.getLogger("dsp.server")
    log.info("started", extra={"fields": {"port": 8080}})

Decision records (what the bidder decided for one request, and why) are far too many to log
every one at 100k req/s. :class:`DecisionLog` samples them at ``sample_rate`` and caps the
volume with a token bucket of ``max_per_s`` records per second per process:

    decisions = DecisionLog(sample_rate=0.001, max_per_s=50)   # built by the app, one per process
    if decisions.should_sample():          # cheap; build the record only when sampled
        decisions.log(record)              # record: a Mapping or msgspec Struct
    # or, when the record already exists:
    decisions.maybe_log(record)

Records go to the ``dsp.decisions`` logger at INFO with ``msg="decision"`` and the record under
``decision``. The sampler never raises into the bid path: an unencodable record is logged as an
error line instead.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

from dsp.observability.metrics import Metrics

DECISIONS_LOGGER = "dsp.decisions"

# "deterministic": sets are written sorted (msgspec encodes sets natively, in hash order otherwise),
# so the same record always gives the same line.
_encoder = msgspec.json.Encoder(order="deterministic")


def _default(obj: Any) -> Any:
    """Fallback for values msgspec cannot encode (exceptions, paths...)."""
    return str(obj)


_lenient_encoder = msgspec.json.Encoder(enc_hook=_default, order="deterministic")
_unordered_encoder = msgspec.json.Encoder(enc_hook=_default)  # for sets whose items cannot be sorted


class JsonFormatter(logging.Formatter):
    """Formats a ``LogRecord`` as one line of JSON (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                out.setdefault(str(key), value)
        decision = getattr(record, "decision", None)
        if decision is not None:
            out["decision"] = decision
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        try:
            return _lenient_encoder.encode(out).decode()
        except TypeError:  # e.g. a set mixing str and int: not sortable, still loggable
            return _unordered_encoder.encode(out).decode()


#: loggers of the HTTP library that put client addresses and raw request bytes into records
REDACTED_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access")


class RedactClientData(logging.Filter):
    """Rewrites the HTTP library's records so that no client IP address and no raw header or body
    bytes reach the logs (click traffic is end users'): ``"Error handling request from
    203.0.113.9"`` + a traceback quoting the bad bytes becomes ``"Error handling request"`` with
    only the exception's type name (``error_type``). At most one such line per ``every_s``
    seconds per logger; the count of the lines dropped in between rides on the next one."""

    def __init__(self, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._last = -float("inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error_type = record.exc_info[1].__class__.__name__ if record.exc_info else None
        text = str(record.msg)
        record.msg = text.split(" from ", 1)[0] if " from " in text else text.split(":", 1)[0]
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        now = self._clock()
        if now - self._last < self.every_s:
            self._dropped += 1
            return False
        self._last = now
        record.fields = {"error_type": error_type, "dropped_since_last": self._dropped}
        self._dropped = 0
        return True


def configure_json_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's output, as JSON lines, to ``stream`` (default stderr), with the
    HTTP library's loggers redacted (:class:`RedactClientData`).

    Replaces handlers previously installed by this function (idempotent); returns the handler.
    """
    for name in REDACTED_LOGGERS:
        lib = logging.getLogger(name)
        for f in list(lib.filters):
            if isinstance(f, RedactClientData):
                lib.removeFilter(f)
        lib.addFilter(RedactClientData())
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.set_name("dsp-json")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "dsp-json":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class SampledWarning:
    """A warning that cannot flood the log: at most one line per ``interval_s`` for one kind of
    event, carrying how many were suppressed since the last line. For events a client can cause
    at will (malformed bodies, unexpected decoder errors): count them with a metric, log a sample.

        warn = SampledWarning(log, "unexpected decoder error", interval_s=10)
        warn.hit({"exception": "RecursionError"})     # logs now or counts silently

    No traceback is attached (one per request is what this replaces). Not thread-safe (one loop).
    """

    __slots__ = ("_clock", "_last", "_logger", "_message", "interval_s", "suppressed")

    def __init__(self, logger: logging.Logger, message: str, *, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._message = message
        self.interval_s = interval_s
        self._clock = clock
        self._last = -1e18
        self.suppressed = 0

    def hit(self, fields: Mapping[str, Any] | None = None) -> bool:
        """Record one occurrence; True when it was logged."""
        now = self._clock()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        out = dict(fields or {})
        out["suppressed_since_last"] = self.suppressed
        self.suppressed = 0
        self._logger.warning(self._message, extra={"fields": out})
        return True


class DecisionLog:
    """Sampled, rate-limited decision records. One per process; not thread-safe (one loop).

    ``sample_rate`` in [0, 1] is the share of records kept before the rate limit; ``max_per_s``
    (> 0) caps kept records per second (burst up to one second's worth). ``metrics`` (optional)
    counts ``dsp_decision_logs{result=logged|rate_limited}``.
    """

    def __init__(self, *, sample_rate: float = 0.001, max_per_s: float = 50.0,
                 logger: logging.Logger | None = None, metrics: Metrics | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
        if max_per_s <= 0:
            raise ValueError(f"max_per_s must be > 0, got {max_per_s}")
        self.sample_rate = sample_rate
        self.max_per_s = max_per_s
        self._logger = logger if logger is not None else logging.getLogger(DECISIONS_LOGGER)
        self._metrics = metrics
        self._rng = rng if rng is not None else random.Random(os.getpid() ^ time.time_ns())
        self._clock = clock
        self._tokens = max_per_s
        self._last = clock()

    def should_sample(self) -> bool:
        """True for about ``sample_rate`` of calls while the rate limit has room."""
        if self.sample_rate <= 0.0 or self._rng.random() >= self.sample_rate:
            return False
        now = self._clock()
        self._tokens = min(self.max_per_s, self._tokens + (now - self._last) * self.max_per_s)
        self._last = now
        if self._tokens < 1.0:
            if self._metrics is not None:
                self._metrics.decision_logs.labels("rate_limited").inc()
            return False
        self._tokens -= 1.0
        return True

    def log(self, record: Mapping[str, Any] | msgspec.Struct) -> None:
        """Write ``record`` now (no sampling). Never raises."""
        try:
            payload = msgspec.json.decode(_encoder.encode(record))
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            self._logger.error("decision record not encodable", extra={"fields": {"error": str(exc)}})
            return
        self._logger.info("decision", extra={"decision": payload})
        if self._metrics is not None:
            self._metrics.decision_logs.labels("logged").inc()

    def maybe_log(self, record: Mapping[str, Any] | msgspec.Struct) -> bool:
        """Log ``record`` if sampled; returns whether it was logged."""
        if not self.should_sample():
            return False
        self.log(record)
        return True
