"""Events on the wire (Redis stream entries): msgpack, many events per entry.

One stream entry carries a chunk of events (at most :data:`MAX_EVENTS_PER_ENTRY`)::

    v  the schema version of every event in the entry (dsp.events.schema.SCHEMA_VERSION)
    n  the number of events (lag accounting without decoding)
    e  a msgpack array of event maps, each with its ``kind``; fields at their default are omitted

Packing many events in one entry makes a tick's flush one XADD per chunk instead of one per
event. A reader decodes an entry with the decoder of the entry's version; an entry of a version
it does not know is an error (:class:`UnknownVersion`), set aside, never guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from dsp.events.schema import SCHEMA_VERSION, AnyEvent, Event

MAX_EVENTS_PER_ENTRY = 512
FIELD_VERSION = b"v"
FIELD_COUNT = b"n"
FIELD_EVENTS = b"e"

_encoder = msgspec.msgpack.Encoder()
_decoders = {SCHEMA_VERSION: msgspec.msgpack.Decoder(list[AnyEvent])}


class UnknownVersion(ValueError):
    pass


def encode_entry(events: Sequence[Event]) -> dict[bytes, bytes]:
    """The fields of one stream entry holding ``events``."""
    return {FIELD_VERSION: str(SCHEMA_VERSION).encode(), FIELD_COUNT: str(len(events)).encode(),
            FIELD_EVENTS: _encoder.encode(events)}


def decode_entry(fields: dict[bytes, bytes]) -> list[AnyEvent]:
    """The events of one entry. Raises UnknownVersion, msgspec.DecodeError or ValidationError
    (the sink sets such an entry aside; it never blocks the stream)."""
    try:
        version = int(fields.get(FIELD_VERSION, b"0"))
    except ValueError:
        raise UnknownVersion("entry version is not a number") from None
    decoder = _decoders.get(version)
    if decoder is None:
        raise UnknownVersion(f"entry schema version {version} is not known to this reader")
    return decoder.decode(fields.get(FIELD_EVENTS, b"\x90"))
