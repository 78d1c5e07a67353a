"""IP addresses: parsed once per request, checked against private blocks and data-centre ranges.

    ranges = IpRanges.from_lines(["3.0.0.0,3.1.255.255,Amazon AWS,...", "2600:1f00::/24"])
    ip = parse_ip("3.0.4.5")          # (4, 50332677) or None when not an address
    ranges.lookup(ip)                 # "Amazon AWS"
    non_public(ip)                    # "private" | "loopback" | "link-local" | ... | None

Ranges are merged and kept as sorted start/end integer lists per family: a lookup is one
``bisect`` (~0.3 µs for ~3,400 ranges). Lines are either ``start,end[,name[,url]]`` (the ipcat
``datacenters.csv`` format) or a CIDR, optionally followed by ``,name``; ``#`` starts a comment.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from collections.abc import Iterable

import msgspec

Ip = tuple[int, int]  # (family 4 or 6, address as an int)

_NON_PUBLIC: tuple[tuple[str, str], ...] = (
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("0.0.0.0/8", "unspecified"),
    ("224.0.0.0/4", "multicast"), ("255.255.255.255/32", "broadcast"),
    ("::1/128", "loopback"), ("::/128", "unspecified"), ("fe80::/10", "link-local"),
    ("fc00::/7", "private"), ("ff00::/8", "multicast"),
)


def parse_ip(text: str | None) -> Ip | None:
    """An address as sent in ``device.ip``/``device.ipv6`` -> (family, int); None if invalid."""
    if not text:
        return None
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        pass
    try:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text.strip("[]")), "big")
    except (OSError, ValueError):
        return None


class RangeProblem(ValueError):
    """A line of a range file that is not a range (the loader reports it with the line number)."""


def _parse_line(line: str) -> tuple[int, int, int, str] | None:
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        if "/" in parts[0]:
            net = ipaddress.ip_network(parts[0], strict=False)
            return (net.version, int(net.network_address), int(net.broadcast_address),
                    parts[1] if len(parts) > 1 else "")
        start, end = ipaddress.ip_address(parts[0]), ipaddress.ip_address(parts[1])
    except (ValueError, IndexError) as exc:
        raise RangeProblem(f"not a range: {text[:80]!r} ({exc})") from None
    if start.version != end.version or int(end) < int(start):
        raise RangeProblem(f"not a range: {text[:80]!r}")
    return start.version, int(start), int(end), parts[2] if len(parts) > 2 else ""


class _Family(msgspec.Struct, frozen=True, gc=False):
    starts: list[int]
    ends: list[int]
    names: list[str]


class IpRanges(msgspec.Struct, frozen=True, gc=False):
    """Sorted, merged ranges per address family; immutable once built."""

    v4: _Family
    v6: _Family

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IpRanges:
        """Build from range lines. Raises :class:`RangeProblem` naming the first bad line."""
        found: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for n, line in enumerate(lines, 1):
            try:
                got = _parse_line(line)
            except RangeProblem as exc:
                raise RangeProblem(f"line {n}: {exc}") from None
            if got is not None:
                found[got[0]].append((got[1], got[2], got[3]))
        return cls(_merge(found[4]), _merge(found[6]))

    def lookup(self, ip: Ip | None) -> str | None:
        """The range's name (or "data centre") when ``ip`` is in one, else None."""
        if ip is None:
            return None
        fam = self.v4 if ip[0] == 4 else self.v6
        i = bisect_right(fam.starts, ip[1]) - 1
        if i >= 0 and ip[1] <= fam.ends[i]:
            return fam.names[i] or "data centre"
        return None

    def __len__(self) -> int:
        return len(self.v4.starts) + len(self.v6.starts)


def _merge(ranges: list[tuple[int, int, str]]) -> _Family:
    ranges.sort()
    starts: list[int] = []
    ends: list[int] = []
    names: list[str] = []
    for start, end, name in ranges:
        if ends and start <= ends[-1]:  # overlapping: one range (adjacent ones keep their names)
            ends[-1] = max(ends[-1], end)
            continue
        starts.append(start)
        ends.append(end)
        names.append(name)
    return _Family(starts, ends, names)


NON_PUBLIC = IpRanges.from_lines(f"{net},{kind}" for net, kind in _NON_PUBLIC)


def non_public(ip: Ip | None) -> str | None:
    """Why ``ip`` cannot be a consumer's public address (private, loopback, link-local, ...)."""
    return NON_PUBLIC.lookup(ip)
