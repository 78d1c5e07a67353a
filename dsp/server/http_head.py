"""Reading a bid request's HTTP/1.1 head for the lean front (dsp.server.front), and the checks that
keep the front at least as strict as aiohttp's parser.

    head = parse_head(buf[:end])     # Head, or None: not a request the front serves itself

``None`` hands the connection to aiohttp, which answers it (every other route) or refuses it with
its own 400 (so a head the front does not like gets exactly aiohttp's answer). Each check is its
own function, so the head parsing can be swapped (e.g. for httptools) and the checks kept:

* :func:`head_bytes_ok` — no control characters but HTAB (aiohttp refuses them in values too);
* :func:`field_name_ok` — header names are RFC 9110 tokens (no spaces, controls, non-ASCII);
* :func:`bare_lf_head` — a head ended by bare LFs (``\\n\\n``): aiohttp refuses it, and waiting for
  the CRLF CRLF that never comes would hold the connection until the request timeout;
* an HTTP/1.1 request without ``Host`` (RFC 9112 section 3.2) is not served;
* at most one ``Content-Length`` of at most 12 digits; no ``Transfer-Encoding``, ``Expect``,
  ``Upgrade``; ``Content-Encoding`` absent, ``identity`` or ``gzip``; no folded lines.
"""

from __future__ import annotations

import httptools

_MAX_LENGTH_DIGITS = 12
_GZIP_ENCODINGS = (b"", b"identity", b"gzip", b"x-gzip")
_NAME_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789_.-"
# RFC 9110 section 5.6.2 tchar.
_TOKEN_CHARS = (b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Bytes allowed anywhere in a head: HTAB, CR, LF, visible ASCII, space, obs-text (0x80-0xff).
_HEAD_BYTES = bytes([9, 10, 13, *range(0x20, 0x7F), *range(0x80, 0x100)])
VERSION_NAME = b"x-openrtb-version"


def head_bytes_ok(head: bytes) -> bool:
    """True when ``head`` holds no control character but HTAB, CR and LF (and no DEL)."""
    return not head.translate(None, _HEAD_BYTES)


def field_name_ok(name: bytes) -> bool:
    """True when ``name`` is a non-empty RFC 9110 token. Nearly every name is letters, digits and
    dashes: one ``replace`` + ``isalnum`` (ASCII-only for bytes) decides those."""
    if name.replace(b"-", b"").isalnum():
        return True
    return bool(name) and not name.translate(None, _TOKEN_CHARS)


def bare_lf_head(buf: bytes) -> bool:
    """True when ``buf`` (no CRLF CRLF in it) already holds a head ended by bare line feeds."""
    return b"\n\n" in buf or b"\n\r\n" in buf


def accepts_gzip(value: bytes) -> bool:
    """True when an ``Accept-Encoding`` value accepts gzip (``gzip`` or ``*`` without ``q=0``)."""
    for item in value.lower().split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip() in (b"gzip", b"x-gzip", b"*"):
            q = params.strip()
            if not q.startswith(b"q=") or q[2:].strip(b" 0.") != b"":
                return True
    return False


class Head:
    """The parts of a bid request's head the front uses."""

    __slots__ = ("accept_gzip", "close", "exchange", "fields", "gpc", "length", "version")

    def __init__(self, exchange: str, length: int, accept_gzip: bool, close: bool,
                 version: bytes | None, gpc: bool = False,
                 fields: list[tuple[bytes, bytes]] | None = None) -> None:
        self.exchange = exchange
        self.length = length
        self.accept_gzip = accept_gzip
        self.close = close
        self.version = version
        self.gpc = gpc  # Sec-GPC: 1 (Global Privacy Control, forwarded by the exchange)
        self.fields = fields or []  # (name, value) as sent

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name`` (lower case), or None. Read only for guarded exchanges
        (:mod:`dsp.exchanges.auth`), so the common path never pays for it."""
        for key, value in self.fields:
            if key.lower() == name:
                return value.strip(b" \t")
        return None


class _HeadFields:
    """httptools callbacks for one head: the request target and the header fields, as sent."""

    __slots__ = ("fields", "url")

    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))


def parse_head(head: bytes) -> Head | None:
    """Parse a request head (without the final blank line). None: not a request the front serves
    (another route, method or protocol version, or anything unusual): aiohttp gets it.

    The head goes through llhttp (httptools, the C parser behind uvloop's and Node's HTTP): it
    rejects malformed request lines, bare CR/LF line ends and invalid header names; the checks of
    the module docstring run on what it returns (and on the raw bytes), so the front stays at
    least as strict as aiohttp whichever parser reads the head."""
    if (not head.startswith(b"POST /bid/") or b"\r\n " in head or b"\r\n\t" in head
            or not head_bytes_ok(head)):
        return None  # another route or method (aiohttp's), a control byte, or obsolete folding
    fields = _HeadFields()
    parser = httptools.HttpRequestParser(fields)
    try:
        parser.feed_data(head + b"\r\n\r\n")
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    if parser.get_http_version() != "1.1":
        return None
    name = fields.url[5:].partition(b"?")[0]
    # Exchange names are config identifiers ([a-z0-9_.-], dsp.config.schema.Ident); anything
    # else (escapes, fragments, upper case, a longer path) is aiohttp's to route or refuse.
    if not name or name.translate(None, _NAME_CHARS) or b" " in fields.url:
        return None
    length = -1
    accept_gzip = close = host = gpc = False
    version: bytes | None = None
    for key, raw in fields.fields:
        if not field_name_ok(key):
            return None
        key = key.lower()
        value = raw.strip(b" \t")
        if key == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            length = int(value)
        elif key == b"host":
            host = True
        elif key == b"accept-encoding":
            accept_gzip = accepts_gzip(value)
        elif key == b"connection":
            close = b"close" in value.lower()
        elif key == b"sec-gpc":
            gpc = value == b"1"
        elif key == VERSION_NAME:
            version = value if value.isascii() and value.decode().isprintable() else None
        elif key == b"content-encoding":
            if value.lower() not in _GZIP_ENCODINGS:
                return None
        elif key in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
    if not host:
        return None
    return Head(name.decode(), max(length, 0), accept_gzip, close, version, gpc, fields.fields)
