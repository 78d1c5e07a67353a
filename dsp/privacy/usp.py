"""The IAB US Privacy string (CCPA, "uspv1"): four characters, e.g. ``1YYN``.

    us_privacy_opted_out("1YYN")   # -> True: character 3 is "Y", the user opted out of sale

Version ``1``, then explicit notice, opt-out of sale, LSPA coverage, each ``Y``, ``N`` or ``-``
(not applicable). ``1---`` means the law does not apply. Anything else is :class:`Malformed`.
"""

from __future__ import annotations

from dsp.privacy.bits import Malformed

_FLAGS = frozenset("YN-")


def us_privacy_opted_out(value: str) -> bool:
    """True when the string says the user opted out of sale. Raises :class:`Malformed`."""
    text = value.strip().upper()
    if len(text) != 4 or text[0] != "1" or not _FLAGS.issuperset(text[1:]):
        raise Malformed(f"US Privacy string {value[:16]!r} (expected 1 then three of Y, N, -)")
    return text[2] == "Y"
