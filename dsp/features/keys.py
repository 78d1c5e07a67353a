"""Redis key layout for user state, designed for Redis Cluster from day one.

One user's keys share a hash tag, so they live on one cluster slot and one pipeline/MULTI can
touch them together::

    u:{3f2a9c0d1b7e4f55}       features record (msgpack, see dsp.features.record), schema-versioned
    u:{3f2a9c0d1b7e4f55}:fc    frequency-cap hash: field = campaign id, value = opaque bytes
                               owned by dsp.budget; the feature store only reads it

The tag is the first 16 hex digits (64 bits) of BLAKE2b(raw user id): raw ids (exchange user ids,
device ids) never appear in Redis or in notice tokens, and the key length is fixed (20 bytes).

``SCHEMA_VERSION`` is stored inside every features record. Bump it whenever the feature contract
(dsp.features.contract) changes names, order, kinds or defaults; readers treat records with another
version as unknown users (defaults), so a rolling deploy degrades instead of misreading vectors.
"""

from __future__ import annotations

import hashlib

#: Version of the features record layout and of the feature contract it encodes.
SCHEMA_VERSION: int = 1

#: contract_fingerprint() of the contract that SCHEMA_VERSION describes (checked by a test).
CONTRACT_FINGERPRINT: str = "d32b590b8220cdf6"

USER_PREFIX = "u:"
CAPS_SUFFIX = ":fc"
_TAG_HEX_DIGITS = 16
_blake2b = hashlib.blake2b


def user_tag(raw_id: str) -> str:
    """16 hex digits of BLAKE2b-64 of the UTF-8 raw id (digest_size 8: exactly ``_TAG_HEX_DIGITS``)."""
    return _blake2b(raw_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def user_key(raw_id: str) -> str:
    """The features key of a raw user id, e.g. ``u:{3f2a9c0d1b7e4f55}``. ``""`` maps to ``""``."""
    if not raw_id:
        return ""
    return USER_PREFIX + "{" + user_tag(raw_id) + "}"


def caps_key(user_key_: str) -> str:
    """The frequency-cap hash key of a user key; same hash tag, hence same cluster slot."""
    if not user_key_:
        raise ValueError("caps_key needs a non-empty user key")
    return f"{user_key_}{CAPS_SUFFIX}"


def is_user_key(key: str) -> bool:
    """True for keys shaped like :func:`user_key` output."""
    return (len(key) == len(USER_PREFIX) + _TAG_HEX_DIGITS + 2 and key.startswith(USER_PREFIX + "{")
            and key.endswith("}"))
