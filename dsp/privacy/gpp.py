"""IAB Global Privacy Platform strings: the header, the section split, and the US sections' opt-outs.

    gpp = parse_gpp("DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN")
    gpp.sections   # {2: "CPXxRf...", 6: "1YNN"}
    us_opt_out(7, "BVVqAAEABCA.QA")   # -> UsChoice(sale=..., sharing=..., targeted=..., gpc=...)

Header (GPP Consent String Specification v1): Type int(6) = 3, Version int(6) = 1, then the
section ids as a Range(Fibonacci): NumEntries int(12); per entry IsARange bool, an offset from the
last id seen (Fibonacci), and for a range its length (Fibonacci). Sections follow the header
joined by ``~`` in the order of their ids; a section may have sub-segments joined by ``.``.

US sections (ids 7-23, the MSPA national and state specifications) all start with Version int(6)
and a run of 2-bit notice fields, then the 2-bit opt-out fields this bidder must honour:
``1`` = opted out, ``2`` = did not opt out, ``0`` = not applicable. Their offsets differ per state
(the number of notice fields differs), so they are data: :data:`US_SECTIONS`. A second
sub-segment of SubsectionType int(2) = 1 carries Gpc bool. Sections published with a different
header layout (ids 24-27: Maryland, Indiana, Kentucky, Rhode Island, public comment in 2025) are
listed as unsupported: an applicable unsupported section means no user data (fail closed).
"""

from __future__ import annotations

import msgspec

from dsp.privacy.bits import Bits, Malformed

TCF_EU_V2 = 2
USP_V1 = 6


class UsLayout(msgspec.Struct, frozen=True):
    """Where a US section keeps its opt-outs (bit offsets in the core sub-segment; None: absent)."""

    prefix: str
    sale: int
    sharing: int | None
    targeted: int | None


# Version(6) then N notices of 2 bits: opt-outs start at 6 + 2N.
US_SECTIONS: dict[int, UsLayout] = {
    7: UsLayout("usnat", 18, 20, 22),   # 6 notices; SaleOptOut, SharingOptOut, TargetedAdvertisingOptOut
    8: UsLayout("usca", 12, 14, None),  # 3 notices; SaleOptOut, SharingOptOut (CPRA "sharing")
    9: UsLayout("usva", 12, None, 14),
    10: UsLayout("usco", 12, None, 14),
    11: UsLayout("usut", 14, None, 16),  # 4 notices
    12: UsLayout("usct", 12, None, 14),
    13: UsLayout("usfl", 12, None, 14),
    14: UsLayout("usmt", 12, None, 14),
    15: UsLayout("usor", 12, None, 14),
    16: UsLayout("ustx", 12, None, 14),
    17: UsLayout("usde", 12, None, 14),
    18: UsLayout("usia", 14, None, 16),  # 4 notices
    19: UsLayout("usne", 12, None, 14),
    20: UsLayout("usnh", 12, None, 14),
    21: UsLayout("usnj", 12, None, 14),
    22: UsLayout("ustn", 12, None, 14),
    23: UsLayout("usmn", 12, None, 14),
}
UNSUPPORTED_US = frozenset({24, 25, 26, 27})  # usmd, usin, usky, usri: new header layout
US_IDS = frozenset(US_SECTIONS) | UNSUPPORTED_US | {USP_V1}

MAX_SECTIONS = 64  # a header listing more ids than there are sections defined is malformed


class GppString(msgspec.Struct, frozen=True, gc=False):
    """The header's section ids (in order) and each section's text by id."""

    ids: tuple[int, ...]
    sections: dict[int, str]


def _section_ids(bits: Bits) -> tuple[int, ...]:
    n = bits.uint(12, 12)
    if n > MAX_SECTIONS:
        raise Malformed(f"{n} section entries")
    off = 24
    last = 0
    ids: list[int] = []
    for _ in range(n):
        is_range = bits.bit(off)
        offset, off = bits.fibonacci(off + 1)
        start = last + offset
        if is_range:
            length, off = bits.fibonacci(off)
            end = start + length
        else:
            end = start
        if end - start > MAX_SECTIONS:
            raise Malformed(f"section range {start}-{end}")
        ids.extend(range(start, end + 1))
        last = end
    if len(ids) > MAX_SECTIONS:
        raise Malformed(f"{len(ids)} section ids")
    return tuple(ids)


def parse_gpp(text: str) -> GppString:
    """Split a GPP string into its sections. Raises :class:`Malformed` (wrong type or version,
    or a header whose id count differs from the number of sections)."""
    parts = text.strip().split("~")
    bits = Bits.of(parts[0])
    kind, version = bits.uint(0, 6), bits.uint(6, 6)
    if kind != 3 or version != 1:
        raise Malformed(f"GPP header type {kind} version {version} (expected 3, 1)")
    ids = _section_ids(bits)
    if len(ids) != len(parts) - 1:
        raise Malformed(f"header lists {len(ids)} sections, string has {len(parts) - 1}")
    return GppString(ids, dict(zip(ids, parts[1:], strict=True)))


class UsChoice(msgspec.Struct, frozen=True, gc=False):
    """A US section's answers: True means the user opted out (or sent GPC)."""

    sale: bool
    sharing: bool
    targeted: bool
    gpc: bool

    @property
    def any(self) -> bool:
        return self.sale or self.sharing or self.targeted or self.gpc


def _opt(bits: Bits, off: int | None) -> bool:
    if off is None:
        return False
    value = bits.uint(off, 2)
    if value == 3:
        raise Malformed(f"opt-out field at bit {off} is 3 (valid: 0, 1, 2)")
    return value == 1


def us_opt_out(section_id: int, text: str) -> UsChoice:
    """Decode the opt-outs of US section ``section_id``. Raises :class:`Malformed`, including
    for the sections whose layout is not supported (fail closed)."""
    layout = US_SECTIONS.get(section_id)
    if layout is None:
        raise Malformed(f"GPP section {section_id} is not a supported US section")
    segments = text.strip().split(".")
    core = Bits.of(segments[0])
    if core.uint(0, 6) < 1:
        raise Malformed(f"{layout.prefix} version 0")
    gpc = False
    for seg in segments[1:]:
        sub = Bits.of(seg)
        if sub.uint(0, 2) == 1:
            gpc = sub.bit(2)
    return UsChoice(_opt(core, layout.sale), _opt(core, layout.sharing),
                    _opt(core, layout.targeted), gpc)
