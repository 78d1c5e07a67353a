"""Base64url segments of the IAB consent strings as a big-endian bit string.

    bits = Bits.of("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
    bits.uint(0, 6)         # -> 2  (the TCF version: first 6 bits, most significant bit first)

Both TCF v2 and GPP encode each segment as URL-safe base64 without padding, each character six
bits, fields packed left to right. Fixed fields are read from the bytes that hold them (one
``int.from_bytes`` and a shift: reading a vendor bit at offset 3,000 costs the same as reading
the version). Variable-length runs (vendor ranges, Fibonacci integers) are walked on a
``"0"``/``"1"`` string built on first use, with C-level string and regex operations (see
:mod:`dsp.privacy.tcf`).

:class:`Malformed` is raised for characters outside the alphabet, for strings longer than
:data:`MAX_CHARS` and for reads past the end; the callers turn it into "no consent" and count it.
"""

from __future__ import annotations

import binascii

MAX_CHARS = 8192  # a real TC string is 100-3,000 characters; longer ones are refused unread
FIB = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765, 10946,
       17711, 28657, 46368, 75025, 121393, 196418, 317811, 514229, 832040, 1346269)


class Malformed(ValueError):
    """The string is not a well-formed consent string (bad characters, too short, bad value)."""


class Bits:
    """An immutable bit string; ``uint(offset, width)`` reads an unsigned big-endian field."""

    __slots__ = ("_data", "_text", "size")

    def __init__(self, data: bytes, size: int) -> None:
        self._data = data
        self._text: str | None = None
        self.size = size

    @classmethod
    def of(cls, segment: str) -> Bits:
        """Decode one base64url segment (padding optional). Raises :class:`Malformed`."""
        text = segment.rstrip("=")
        if not text:
            raise Malformed("empty segment")
        if len(text) > MAX_CHARS:
            raise Malformed(f"segment of {len(text)} characters (at most {MAX_CHARS})")
        # 6 bits per character. Padding with "A" (six zero bits) to a multiple of 4 characters
        # keeps every 1-3 character tail decodable; the bit count stays that of the text.
        std = text.replace("-", "+").replace("_", "/") + "A" * (-len(text) % 4)
        try:
            data = binascii.a2b_base64(std, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise Malformed(f"not base64url: {exc}") from None
        return cls(data, len(text) * 6)

    @property
    def text(self) -> str:
        """The bits as a ``"0"``/``"1"`` string (built on first use: range walks, Fibonacci)."""
        if self._text is None:
            self._text = bin(int.from_bytes(self._data, "big"))[2:].zfill(len(self._data) * 8)[: self.size]
        return self._text

    def uint(self, offset: int, width: int) -> int:
        """The unsigned integer of ``width`` bits starting at bit ``offset`` (0 = first bit).

        Reads only the bytes that hold the field: one ``int.from_bytes`` and a shift."""
        end = offset + width
        if offset < 0 or end > self.size:
            raise Malformed(f"read of bits {offset}..{end} past the end ({self.size} bits)")
        first = offset >> 3
        last = (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        return (chunk >> ((last << 3) - end)) & ((1 << width) - 1)

    def bit(self, offset: int) -> bool:
        """One bit as a bool (``True`` for 1)."""
        if offset < 0 or offset >= self.size:
            raise Malformed(f"read of bit {offset} past the end ({self.size} bits)")
        return bool((self._data[offset >> 3] >> (7 - (offset & 7))) & 1)

    def fibonacci(self, offset: int) -> tuple[int, int]:
        """A Fibonacci-coded integer at ``offset`` (GPP): ``(value, offset after it)``.

        Code words end with ``11``; bit ``i`` of the word stands for the Fibonacci number F(i+2)
        (1, 2, 3, 5, 8, ...). ``0011`` is 3, ``011`` is 2, ``11`` is 1. The end is the first
        ``11`` at or after ``offset`` (a code word has no other).
        """
        end = self.text.find("11", offset)
        if end < 0 or end - offset >= len(FIB):
            raise Malformed(f"no Fibonacci integer at bit {offset}")
        word = self.text[offset:end + 1]
        return sum(FIB[i] for i, ch in enumerate(word) if ch == "1"), end + 2
