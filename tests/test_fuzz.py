"""Property-based fuzzing (Hypothesis): whatever the bytes, the decoder raises only InvalidRequest,
and both transports of a real ``dsp serve`` answer 200/204/4xx, never a 5xx, and log no traceback.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsp.errors import InvalidRequest
from dsp.openrtb.decode import RequestDecoder
from dsp.testing.redis_server import RedisServer
from dsp.testing.serve import running_bidder

VALID = json.dumps({
    "id": "req-1", "tmax": 300, "imp": [{"id": "1", "banner": {"w": 300, "h": 250}, "bidfloor": 0.5}],
    "site": {"id": "s", "domain": "news.example", "cat": ["IAB12"]},
    "device": {"devicetype": 2, "os": "Windows", "geo": {"country": "USA"}},
    "user": {"id": "u-1"}, "regs": {"gdpr": 0}}).encode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@st.composite
def mutated(draw: st.DrawFn, base: bytes = VALID) -> bytes:
    """The valid request with a few bytes flipped, dropped, inserted or a slice repeated."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[i] = draw(st.integers(0, 255))
        elif op == 1:
            del data[i]
        elif op == 2:
            data[i:i] = draw(st.sampled_from([b"[", b"{", b'"', b"\\", b"\xff", b"1e999", b"-", b"0" * 30]))
        else:
            j = draw(st.integers(i, min(len(data), i + 40)))
            data[i:i] = bytes(data[i:j]) * draw(st.integers(1, 50))
    return bytes(data)


@st.composite
def patched(draw: st.DrawFn) -> bytes:
    """The valid request with one top-level field replaced by arbitrary JSON."""
    req = json.loads(VALID)
    req[draw(st.sampled_from([*req, "ext", "source", "app", "bcat"]))] = draw(json_values)
    return json.dumps(req).encode()


bodies = st.one_of(st.binary(max_size=300), mutated(), patched(),
                   json_values.map(lambda v: json.dumps(v).encode()),
                   st.integers(1, 3000).map(lambda n: b'{"id":"r","imp":' + b"[" * n))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, lax=st.booleans())
def test_the_decoder_raises_only_invalid_request(body: bytes, lax: bool) -> None:
    try:
        RequestDecoder().decode(body, lax_numbers=lax)
    except InvalidRequest as exc:
        assert exc.message


@pytest.fixture(scope="module", params=["front", "aiohttp"])
def bidder(request: pytest.FixtureRequest, redis_server: RedisServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    with running_bidder(redis_server.url, log, env={"DSP_TRANSPORT": request.param,
                                                          "DSP_REQUEST_TIMEOUT": "1"}) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port), log


def _exchange(host: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def _statuses(out: bytes) -> list[int]:
    return [int(line.split(b" ")[1]) for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.")]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=bodies, chunked=st.booleans(), exchange=st.sampled_from(["generic", "smaato"]))
def test_any_body_gets_200_204_or_4xx(bidder: tuple[str, int, Path], body: bytes, chunked: bool,
                                      exchange: str) -> None:
    host, port, _ = bidder
    head = f"POST /bid/{exchange} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    if chunked:
        data = head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    else:
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    statuses = _statuses(_exchange(host, port, data))
    assert len(statuses) == 1, statuses
    assert statuses[0] in (200, 204) or 400 <= statuses[0] < 500, statuses


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=400),
    mutated(b"POST /bid/generic HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(VALID) + VALID),
    mutated(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")))
def test_any_byte_stream_never_gets_a_5xx(bidder: tuple[str, int, Path], data: bytes) -> None:
    host, port, _ = bidder
    for status in _statuses(_exchange(host, port, data)):
        assert status < 500, (status, data[:200])


def test_the_bidder_logged_no_traceback(bidder: tuple[str, int, Path]) -> None:
    # Runs after the fuzzers above on the same server (module-scoped, file order). The bidder's
    # own loggers (dsp.*) wrote no traceback and no error; aiohttp's parser logs its own 400s
    # (logger aiohttp.server), which is the logging configuration's business, not the bid path's.
    host, port, log = bidder
    assert _statuses(_exchange(host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == [200]
    lines = log.read_text().splitlines()
    assert not [line for line in lines if not line.startswith("{") and "Traceback" in line]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [r for r in records if not r["logger"].startswith("aiohttp")]
    assert not [r for r in ours if "exc" in r or r["level"] in ("ERROR", "CRITICAL")], ours[-5:]
