"""Who may send bid requests for an exchange: opt-in authentication per exchange profile.

An exchange profile may carry an ``auth`` block (YAML, :class:`ExchangeAuth`); without one the
profile is open (the shipped demo profiles, so local tools and tests work; ``dsp serve`` warns at
start-up for every open profile when it listens beyond loopback). The mechanisms are the ones
exchanges use in practice::

    auth:
      secret: {header: X-Exchange-Key, env: DSP_EXCHANGE_ACME_KEY}      # shared secret in a header
      basic: {user: acme, password_env: DSP_EXCHANGE_ACME_PASSWORD}     # HTTP Basic credentials
      allow_cidrs: [203.0.113.0/24, 2001:db8::/32]                      # where requests may come from
      trusted_proxies: [10.0.0.0/8]     # our load balancers: they append the client to the header
      forwarded_header: X-Forwarded-For

Rules (:meth:`ExchangeGuard.check`, run on the raw head before the body is decoded):

* ``allow_cidrs`` set: the source address must lie in one of them, else **403**. The source is
  the TCP peer, unless the peer is one of ``trusted_proxies``: then it is the right-most address
  of ``forwarded_header`` that is not itself a trusted proxy (what our own load balancer saw;
  entries further left were written by the client and prove nothing). A missing or unparsable
  header behind a trusted proxy is a 403.
* ``secret`` and/or ``basic`` set: one of them must match, else **401**. Values are compared as
  bytes in constant time (``hmac.compare_digest``); any header value (non-ASCII included) is a
  plain mismatch, never an error.
* Secrets come from the environment only (the profile names the variable, never the value). A
  variable that is unset or empty makes the profile refuse every request (fail closed) and is
  reported by :func:`missing_secrets` so ``dsp serve`` refuses to start.

Cost: an open profile costs one ``is None`` test per request; a guarded one a few header lookups,
one or two ``ipaddress`` parses and an HMAC-free byte compare (a few µs).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Annotated

import msgspec
from msgspec import Meta

EnvName = Annotated[str, Meta(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
HeaderName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SharedSecret(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    header: HeaderName
    env: EnvName


class BasicAuth(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    user: Annotated[str, Meta(pattern=r"^[^:\s]{1,128}$")]
    password_env: EnvName


class ExchangeAuth(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The ``auth`` block of an exchange profile (see the module docstring)."""

    secret: SharedSecret | None = None
    basic: BasicAuth | None = None
    allow_cidrs: list[str] | None = None
    trusted_proxies: list[str] = []
    forwarded_header: HeaderName = "X-Forwarded-For"


def config_problems(auth: ExchangeAuth) -> list[tuple[str, str]]:
    """``(path, message)`` for every malformed part (the config loader reports them)."""
    out: list[tuple[str, str]] = []
    if auth.secret is None and auth.basic is None and auth.allow_cidrs is None:
        out.append(("auth", "names no mechanism: give secret, basic and/or allow_cidrs"))
    for field in ("allow_cidrs", "trusted_proxies"):
        for i, text in enumerate(getattr(auth, field) or ()):
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                out.append((f"auth.{field}[{i}]", f"not an IP network: {text!r}"))
    return out


def missing_secrets(auth: ExchangeAuth | None, env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the environment variables ``auth`` needs that are unset or empty."""
    if auth is None:
        return []
    env = os.environ if env is None else env
    names = [s.env for s in (auth.secret,) if s is not None]
    names += [b.password_env for b in (auth.basic,) if b is not None]
    return [n for n in names if not env.get(n)]


def _networks(texts: list[str] | None) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts or ())


def _address(text: str) -> IpAddress | None:
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _inside(addr: IpAddress, nets: tuple[IpNetwork, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


HeaderGetter = Callable[[bytes], "bytes | None"]  # lower-case header name -> raw value or None


class ExchangeGuard:
    """One profile's compiled ``auth`` block, with its secrets read from the environment."""

    __slots__ = ("_allow", "_basic", "_forwarded", "_proxies", "_secret", "_secret_header",
                 "needs_headers")

    def __init__(self, auth: ExchangeAuth, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._allow = _networks(auth.allow_cidrs) if auth.allow_cidrs is not None else None
        self._proxies = _networks(auth.trusted_proxies)
        self._forwarded = auth.forwarded_header.lower().encode()
        self._secret_header = b""
        self._secret: bytes | None = None
        if auth.secret is not None:
            self._secret_header = auth.secret.header.lower().encode()
            # An unset variable leaves b"": compare_digest then fails every request (fail closed).
            self._secret = env.get(auth.secret.env, "").encode()
        self._basic: bytes | None = None
        if auth.basic is not None:
            password = env.get(auth.basic.password_env, "")
            pair = f"{auth.basic.user}:{password}".encode()
            self._basic = b"Basic " + base64.b64encode(pair) if password else b""
        #: the lower-case header names :meth:`check` reads (the front extracts only these)
        self.needs_headers = tuple(h for h in (
            self._secret_header, b"authorization" if self._basic is not None else b"",
            self._forwarded if self._proxies else b"") if h)

    def source(self, peer: str | None, header: HeaderGetter) -> IpAddress | None:
        """The client address to check against ``allow_cidrs`` (module docstring)."""
        addr = _address(peer) if peer else None
        if addr is None or not self._proxies or not _inside(addr, self._proxies):
            return addr
        raw = header(self._forwarded)
        if raw is None:
            return None
        for item in reversed(raw.split(b",")):
            hop = _address(item.decode("latin-1"))
            if hop is None:
                return None
            if not _inside(hop, self._proxies):
                return hop
        return None  # every hop is one of ours: nobody outside is named

    def check(self, peer: str | None, header: HeaderGetter) -> int | None:
        """None when the request may proceed; otherwise the status to answer (401 or 403)."""
        if self._allow is not None:
            addr = self.source(peer, header)
            if addr is None or not _inside(addr, self._allow):
                return 403
        if self._secret is None and self._basic is None:
            return None
        if self._secret is not None:
            got = header(self._secret_header)
            if got is not None and self._secret and hmac.compare_digest(got.strip(), self._secret):
                return None
        if self._basic is not None:
            got = header(b"authorization")
            if got is not None and self._basic and hmac.compare_digest(got.strip(), self._basic):
                return None
        return 401


def build_guards(profiles: Mapping[str, object], env: Mapping[str, str] | None = None
                 ) -> dict[str, ExchangeGuard]:
    """A guard for every profile whose ``auth`` is set (profiles: name -> object with ``.auth``)."""
    out: dict[str, ExchangeGuard] = {}
    for name, profile in profiles.items():
        auth = getattr(profile, "auth", None)
        if isinstance(auth, ExchangeAuth):
            out[name] = ExchangeGuard(auth, env)
    return out


def headers_from_mapping(headers: Mapping[str, str]) -> HeaderGetter:
    """A :data:`HeaderGetter` over a case-insensitive str mapping (aiohttp's ``request.headers``).
    Values go back to bytes the way aiohttp decoded them (UTF-8, surrogateescape)."""
    def get(name: bytes) -> bytes | None:
        value = headers.get(name.decode())
        return None if value is None else value.encode("utf-8", "surrogateescape")
    return get
