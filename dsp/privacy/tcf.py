"""IAB TCF v2 (2.0-2.2) TC strings: the core segment, decoded against the published bit layout.

    core = decode_core("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", vendor_id=755)
    core.purpose_consent(1), core.vendor_consent, core.restrictions   # for OUR vendor only

Why our own decoder: the PyPI candidates (``iab-tcf`` 0.2.2, last released 2022-10) depend on a
bitarray fork, expand range-encoded vendor lists into a dict per vendor (quadratic merge per
range) and know nothing of GPP; the layout itself is ~30 fixed fields. Decoding here answers
only what the bid path asks (our vendor's bits and restrictions) in one pass without building
sets: ~3-6 µs for a short string (``benchmarks/bench_privacy.py``). :func:`decode_vendor_ids`
materialises whole vendor sets for ``dsp explain`` and tests.

Core segment (bit offsets; "Consent string and vendor list formats v2", IAB Tech Lab)::

    0 Version 6 | 6 Created 36 | 42 LastUpdated 36 | 78 CmpId 12 | 90 CmpVersion 12
    102 ConsentScreen 6 | 108 ConsentLanguage 12 | 120 VendorListVersion 12
    132 TcfPolicyVersion 6 | 138 IsServiceSpecific 1 | 139 UseNonStandardTexts 1
    140 SpecialFeatureOptIns 12 | 152 PurposesConsent 24 | 176 PurposesLITransparency 24
    200 PurposeOneTreatment 1 | 201 PublisherCC 12 | 213 vendor consents | vendor LI
    | NumPubRestrictions 12, each: PurposeId 6, RestrictionType 2, range entries

A vendor section is MaxVendorId 16, IsRangeEncoding 1, then either a MaxVendorId-bit field (bit
``i-1`` is vendor ``i``) or NumEntries 12 of (IsARange 1, Start 16[, End 16]).
"""

from __future__ import annotations

import functools
import re

import msgspec

from dsp.privacy.bits import Bits, Malformed

# Publisher restriction types (per purpose, per vendor range).
NOT_ALLOWED = 0
REQUIRE_CONSENT = 1
REQUIRE_LI = 2

_VENDOR_START = 213


class TcfCore(msgspec.Struct, frozen=True, gc=False):
    """The core segment's fields, with our vendor's consent, LI and restrictions resolved.

    Purposes and special features are bit masks as in the string: purpose ``n`` is bit
    ``24 - n`` of ``purposes_consent`` (use :meth:`purpose_consent`)."""

    version: int
    created_ds: int  # deciseconds since the epoch
    last_updated_ds: int
    cmp_id: int
    cmp_version: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    service_specific: bool
    special_features: int  # 12 bits, feature 1 = most significant
    purposes_consent: int  # 24 bits, purpose 1 = most significant
    purposes_li: int
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_id: int  # the vendor the fields below answer for (0: none asked)
    vendor_consent: bool
    vendor_li: bool
    restrictions: tuple[tuple[int, int], ...]  # (purpose id, restriction type) for vendor_id

    def purpose_consent(self, purpose: int) -> bool:
        return 1 <= purpose <= 24 and bool((self.purposes_consent >> (24 - purpose)) & 1)

    def purpose_li(self, purpose: int) -> bool:
        return 1 <= purpose <= 24 and bool((self.purposes_li >> (24 - purpose)) & 1)

    def special_feature(self, feature: int) -> bool:
        return 1 <= feature <= 12 and bool((self.special_features >> (12 - feature)) & 1)

    def restriction(self, purpose: int) -> int | None:
        """The publisher's restriction type on ``purpose`` for our vendor, or None."""
        for p, kind in self.restrictions:
            if p == purpose:
                return kind
        return None


def _letters(value: int) -> str:
    """Two 6-bit letters (0 = 'A') as in ConsentLanguage and PublisherCC."""
    hi, lo = value >> 6, value & 63
    if hi > 25 or lo > 25:
        raise Malformed(f"letter code {hi},{lo} outside A-Z")
    return chr(65 + hi) + chr(65 + lo)


_TOKEN = re.compile(r"1[01]{32}|0[01]{16}")
_RANGE = re.compile(r"(?:^|,)1([01]{16})([01]{16})")


@functools.lru_cache(maxsize=512)
def _entries(n: int) -> re.Pattern[str]:
    """A regex matching exactly ``n`` consecutive range entries (17 or 33 bits each)."""
    return re.compile(r"(?:1[01]{32}|0[01]{16}){" + str(n) + "}")


def _ranges(bits: Bits, off: int, vendor_id: int) -> tuple[bool, int]:
    """Walk NumEntries range entries at ``off``: (vendor_id covered?, offset after them).

    Entries are 17 or 33 bits (by their IsARange bit), so their boundaries are found by one
    C-level regex match over the bit string; single ids are then tested with one list
    membership and only the true ranges are compared in Python, as 16-character binary strings
    (which order like the numbers they spell). ~10x faster than reading field by field."""
    n = bits.uint(off, 12)
    off += 12
    if n == 0:
        return False, off
    text = bits.text
    m = _entries(n).match(text, off)
    if m is None:
        raise Malformed(f"{n} vendor range entries do not fit in the string")
    if not 0 < vendor_id < 65536:
        return False, m.end()
    want = format(vendor_id, "016b")
    tokens = _TOKEN.findall(text, off, m.end())
    if "0" + want in tokens:
        return True, m.end()
    for start, end in _RANGE.findall(",".join(tokens)):
        if start <= want <= end:
            return True, m.end()
    return False, m.end()


def _vendor_section(bits: Bits, off: int, vendor_id: int) -> tuple[bool, int]:
    """(vendor_id's bit, offset after the section) for a consent or LI vendor section."""
    max_id = bits.uint(off, 16)
    if bits.bit(off + 16):
        return _ranges(bits, off + 17, vendor_id)
    start = off + 17
    end = start + max_id
    if end > bits.size:
        raise Malformed(f"vendor bit field of {max_id} bits runs past the end")
    hit = 1 <= vendor_id <= max_id and bits.bit(start + vendor_id - 1)
    return hit, end


def _restrictions(bits: Bits, off: int, vendor_id: int) -> tuple[tuple[int, int], ...]:
    if off + 12 > bits.size:
        return ()  # strings from early CMPs end after the vendor sections: no restrictions
    n = bits.uint(off, 12)
    off += 12
    out: list[tuple[int, int]] = []
    for _ in range(n):
        purpose = bits.uint(off, 6)
        kind = bits.uint(off + 6, 2)
        hit, off = _ranges(bits, off + 8, vendor_id)
        if hit:
            out.append((purpose, kind))
    return tuple(out)


def _field(head: int, offset: int, width: int) -> int:
    return (head >> (_VENDOR_START - offset - width)) & ((1 << width) - 1)


def decode_core(tc_string: str, vendor_id: int = 0) -> TcfCore:
    """Decode the core segment of ``tc_string`` (other segments are ignored) for ``vendor_id``.

    Raises :class:`Malformed` for anything that does not follow the layout, including
    version 1 strings (TCF v1 was switched off in 2020)."""
    segment = tc_string.split(".", 1)[0].strip()
    bits = Bits.of(segment)
    version = bits.uint(0, 6)
    if version != 2:
        raise Malformed(f"TCF version {version} (only 2 is supported)")
    head = bits.uint(0, _VENDOR_START)  # the fixed fields, read from one int
    consent, off = _vendor_section(bits, _VENDOR_START, vendor_id)
    li, off = _vendor_section(bits, off, vendor_id)
    return TcfCore(
        version=version, created_ds=_field(head, 6, 36), last_updated_ds=_field(head, 42, 36),
        cmp_id=_field(head, 78, 12), cmp_version=_field(head, 90, 12),
        consent_language=_letters(_field(head, 108, 12)),
        vendor_list_version=_field(head, 120, 12), policy_version=_field(head, 132, 6),
        service_specific=bool(_field(head, 138, 1)), special_features=_field(head, 140, 12),
        purposes_consent=_field(head, 152, 24), purposes_li=_field(head, 176, 24),
        purpose_one_treatment=bool(_field(head, 200, 1)),
        publisher_cc=_letters(_field(head, 201, 12)), vendor_id=vendor_id,
        vendor_consent=consent, vendor_li=li,
        restrictions=_restrictions(bits, off, vendor_id))


def _ids_of_section(bits: Bits, off: int) -> tuple[frozenset[int], int]:
    max_id = bits.uint(off, 16)
    if bits.bit(off + 16):
        n = bits.uint(off + 17, 12)
        pos = off + 29
        ids: set[int] = set()
        for _ in range(n):
            start = bits.uint(pos + 1, 16)
            end = bits.uint(pos + 17, 16) if bits.bit(pos) else start
            pos += 33 if bits.bit(pos) else 17
            if start < 1 or end < start or end > max_id:
                raise Malformed(f"vendor range {start}-{end} (max {max_id})")
            ids.update(range(start, end + 1))
        return frozenset(ids), pos
    start = off + 17
    if start + max_id > bits.size:
        raise Malformed(f"vendor bit field of {max_id} bits runs past the end")
    return frozenset(i for i in range(1, max_id + 1) if bits.bit(start + i - 1)), start + max_id


def decode_vendor_ids(tc_string: str) -> tuple[frozenset[int], frozenset[int]]:
    """Every vendor id with consent and with legitimate interest (explain, tests; not hot)."""
    bits = Bits.of(tc_string.split(".", 1)[0].strip())
    if bits.uint(0, 6) != 2:
        raise Malformed("TCF version is not 2")
    consents, off = _ids_of_section(bits, _VENDOR_START)
    lis, _ = _ids_of_section(bits, off)
    return consents, lis
