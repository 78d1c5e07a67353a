"""Base64url segments of the IAB consent strings as a big-endian bit field.

    bits = Bits.of("CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA")
    bits.uint(0, 6)          # -> 2  (the TCF version: first 6 bits, most significant bit first)

Both TCF v2 and GPP encode each segment as URL-safe base64 without padding, each character six
bits, fields packed left to right. A read never walks the string: the bytes that hold the field
are turned into one int and shifted (a 36-bit field costs one ``int.from_bytes``), so reading
a vendor bit at offset 3,000 costs the same as reading the version.

:class:`Malformed` is raised for characters outside the alphabet and for reads past the end; the
callers turn it into "no consent" and count it.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

_TO_STD = str.maketrans("-_", "+/")


class Malformed(ValueError):
    """The string is not a well-formed consent string (bad characters, too short, bad value)."""


class Bits:
    """An immutable bit string; ``uint(offset, width)`` reads an unsigned big-endian field."""

    __slots__ = ("_data", "size")

    def __init__(self, data: bytes, size: int | None = None) -> None:
        self._data = data
        self.size = len(data) * 8 if size is None else size

    @classmethod
    def of(cls, segment: str) -> Bits:
        """Decode one base64url segment (padding optional). Raises :class:`Malformed`."""
        text = segment.rstrip("=")
        if not text:
            raise Malformed("empty segment")
        # 6 bits per character. Padding with "A" (six zero bits) to a multiple of 4 characters
        # keeps every 1-3 character tail decodable; the bit count stays that of the text.
        size = len(text) * 6
        text = text.translate(_TO_STD) + "A" * (-len(text) % 4)
        try:
            data = b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Malformed(f"not base64url: {exc}") from None
        return cls(data, size)

    def uint(self, offset: int, width: int) -> int:
        """The unsigned integer of ``width`` bits starting at bit ``offset`` (0 = first bit)."""
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
        (1, 2, 3, 5, 8, ...). ``0011`` is 3, ``011`` is 2, ``11`` is 1.
        """
        value = 0
        a, b = 1, 2
        prev = False
        pos = offset
        while True:
            cur = self.bit(pos)
            pos += 1
            if cur and prev:
                return value, pos
            if cur:
                value += a
            prev = cur
            a, b = b, a + b
            if pos - offset > 64:
                raise Malformed("Fibonacci integer longer than 64 bits")
