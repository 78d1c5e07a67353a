"""Consent strings built bit by bit, independently of the decoders (tests, fixtures, load tests).

    tc = tc_string(purposes_consent={1, 3, 4, 7}, vendor_consents={1234})
    gpp = gpp_string({7: usnat_section(sale=1), 6: "1YNN"})

The builders write each field as a run of "0"/"1" characters in the order the IAB specifications
list them and map every six characters to one base64url letter: nothing is shared with
:mod:`dsp.privacy`, so a decoder bug cannot cancel itself out in a round trip.
"""

from __future__ import annotations

from collections.abc import Iterable

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _field(value: int, width: int) -> str:
    if value < 0 or value >= 1 << width:
        raise ValueError(f"{value} does not fit in {width} bits")
    return format(value, f"0{width}b")


def _letters(code: str) -> str:
    return "".join(_field(ord(ch) - 65, 6) for ch in code)


def encode_bits(bits: str) -> str:
    """A string of 0/1 -> base64url letters (zero-padded to a multiple of 6 bits)."""
    bits += "0" * (-len(bits) % 6)
    return "".join(_ALPHABET[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))


def _mask(ids: Iterable[int], width: int) -> str:
    chosen = set(ids)
    return "".join("1" if i in chosen else "0" for i in range(1, width + 1))


def _range_entries(ranges: list[tuple[int, int]]) -> str:
    out = _field(len(ranges), 12)
    for start, end in ranges:
        out += ("1" + _field(start, 16) + _field(end, 16)) if end != start else ("0" + _field(start, 16))
    return out


def _as_ranges(ids: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for i in sorted(ids):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return ranges


def _vendors(ids: set[int], range_encoding: bool, max_id: int | None) -> str:
    top = max_id if max_id is not None else max(ids, default=0)
    if range_encoding:
        return _field(top, 16) + "1" + _range_entries(_as_ranges(ids))
    return _field(top, 16) + "0" + _mask(ids, top)


def tc_string(*, purposes_consent: Iterable[int] = (), purposes_li: Iterable[int] = (),
              vendor_consents: Iterable[int] = (), vendor_li: Iterable[int] = (),
              special_features: Iterable[int] = (), range_encoding: bool = False,
              restrictions: Iterable[tuple[int, int, Iterable[int]]] = (),
              version: int = 2, policy_version: int = 4, cmp_id: int = 7, created_ds: int = 17_000_000_000,
              language: str = "EN", publisher_cc: str = "DE", vendor_list_version: int = 150,
              purpose_one_treatment: bool = False, with_restrictions_field: bool = True,
              max_vendor_id: int | None = None) -> str:
    """A TCF v2 core segment. ``restrictions``: (purpose, type, vendor ids) triples."""
    bits = (_field(version, 6) + _field(created_ds, 36) + _field(created_ds, 36)
            + _field(cmp_id, 12) + _field(1, 12) + _field(1, 6) + _letters(language)
            + _field(vendor_list_version, 12) + _field(policy_version, 6) + "1" + "0"
            + _mask(special_features, 12) + _mask(purposes_consent, 24) + _mask(purposes_li, 24)
            + ("1" if purpose_one_treatment else "0") + _letters(publisher_cc)
            + _vendors(set(vendor_consents), range_encoding, max_vendor_id)
            + _vendors(set(vendor_li), range_encoding, max_vendor_id))
    if with_restrictions_field:
        entries = list(restrictions)
        bits += _field(len(entries), 12)
        for purpose, kind, vendors in entries:
            bits += _field(purpose, 6) + _field(kind, 2) + _range_entries(_as_ranges(set(vendors)))
    return encode_bits(bits)


def fibonacci(n: int) -> str:
    """Fibonacci code word of ``n`` >= 1 (ends with "11")."""
    fibs = [1, 2]
    while fibs[-1] <= n:
        fibs.append(fibs[-1] + fibs[-2])
    word = ["0"] * len(fibs)
    rest = n
    for i in range(len(fibs) - 1, -1, -1):
        if fibs[i] <= rest:
            word[i] = "1"
            rest -= fibs[i]
    return "".join(word).rstrip("0") + "1"


def gpp_header(ids: Iterable[int]) -> str:
    """The GPP header (type 3, version 1) listing ``ids``, each as a single-id entry."""
    ordered = sorted(ids)
    bits = _field(3, 6) + _field(1, 6) + _field(len(ordered), 12)
    last = 0
    for i in ordered:
        bits += "0" + fibonacci(i - last)
        last = i
    return encode_bits(bits)


def gpp_string(sections: dict[int, str]) -> str:
    """Header plus sections in id order, joined by ``~``."""
    ids = sorted(sections)
    return "~".join([gpp_header(ids), *(sections[i] for i in ids)])


def us_section(n_notices: int, opt_outs: Iterable[int], tail_bits: int = 30,
               gpc: bool | None = None, version: int = 1) -> str:
    """A US state/national core sub-segment: version, ``n_notices`` notices (all "provided"),
    then the given 2-bit opt-out values (1 opted out, 2 did not), then zeros; ``.`` GPC."""
    bits = _field(version, 6) + _field(1, 2) * n_notices
    for value in opt_outs:
        bits += _field(value, 2)
    bits += "0" * tail_bits
    text = encode_bits(bits)
    if gpc is not None:
        text += "." + encode_bits(_field(1, 2) + ("1" if gpc else "0"))
    return text


def usnat_section(sale: int = 2, sharing: int = 2, targeted: int = 2, gpc: bool | None = None) -> str:
    """usnat (id 7): six notices, then SaleOptOut, SharingOptOut, TargetedAdvertisingOptOut."""
    return us_section(6, (sale, sharing, targeted), gpc=gpc)
