"""Redis key layout for user state, designed for Redis Cluster from day one.

One user's keys share a hash tag, so they live on one cluster slot and one pipeline/MULTI can
touch them together::

    u:{3f2a9c0d1b7e4f55}       features record (msgpack, see dsp.features.record), schema-versioned
    u:{3f2a9c0d1b7e4f55}:fc    frequency-cap hash: field = campaign id, value = opaque bytes
                               owned by dsp.budget; the feature store only reads it

The tag is 16 hex digits (64 bits) of **keyed** BLAKE2b of the raw user id, keyed with the secret
from ``DSP_USER_HASH_KEY``: raw ids (exchange user ids, device ids) never appear in Redis or in
notice tokens, the key length is fixed (20 bytes), and nobody without the key can compute the
tag of a raw id to link tokens or Redis keys to a person. ``dsp serve`` and ``dsp features
seed/load`` read the same variable (they must agree, or every user looks unknown). Unset: the
documented development key :data:`DEV_USER_HASH_KEY` (``dsp serve`` warns when it listens beyond
loopback). The hash tag still wraps the whole tag, so one user's keys share a cluster slot.

``SCHEMA_VERSION`` is stored inside every features record. Bump it whenever the feature contract
(dsp.features.contract) changes names, order, kinds or defaults; readers treat records with another
version as unknown users (defaults), so a rolling deploy degrades instead of misreading vectors.
"""

from __future__ import annotations

import hashlib
import os

#: Version of the features record layout and of the feature contract it encodes.
SCHEMA_VERSION: int = 1

#: contract_fingerprint() of the contract that SCHEMA_VERSION describes (checked by a test).
CONTRACT_FINGERPRINT: str = "d32b590b8220cdf6"

#: the environment variable holding the user-hash key (16..64 bytes of UTF-8 text; longer values
#: are hashed down to 64 bytes)
USER_HASH_KEY_ENV = "DSP_USER_HASH_KEY"
#: the key used when ``DSP_USER_HASH_KEY`` is unset: for development and tests only (public)
DEV_USER_HASH_KEY = b"dsp-development-user-hash-key-not-secret"

USER_PREFIX = "u:"
CAPS_SUFFIX = ":fc"
_TAG_HEX_DIGITS = 16
_blake2b = hashlib.blake2b


def user_hash_key(text: str | None) -> bytes:
    """The hash key for a ``DSP_USER_HASH_KEY`` value (None or empty: the development key).
    Raises ValueError for a value shorter than 16 bytes (too weak to keep ids unlinkable)."""
    if not text:
        return DEV_USER_HASH_KEY
    raw = text.encode("utf-8")
    if len(raw) < 16:
        raise ValueError(f"{USER_HASH_KEY_ENV} must be at least 16 bytes")
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()


def user_hash_key_from_env() -> bytes:
    """The hash key from ``DSP_USER_HASH_KEY`` (see :func:`user_hash_key`)."""
    return user_hash_key(os.environ.get(USER_HASH_KEY_ENV))


def user_tag(raw_id: str, hash_key: bytes = DEV_USER_HASH_KEY) -> str:
    """16 hex digits of keyed BLAKE2b-64 of the UTF-8 raw id (digest_size 8: exactly
    ``_TAG_HEX_DIGITS``)."""
    return _blake2b(raw_id.encode("utf-8", "surrogatepass"), digest_size=8,
                    key=hash_key).hexdigest()


def user_key(raw_id: str, hash_key: bytes = DEV_USER_HASH_KEY) -> str:
    """The features key of a raw user id, e.g. ``u:{3f2a9c0d1b7e4f55}``. ``""`` maps to ``""``."""
    if not raw_id:
        return ""
    return USER_PREFIX + "{" + user_tag(raw_id, hash_key) + "}"


def caps_key(user_key_: str) -> str:
    """The frequency-cap hash key of a user key; same hash tag, hence same cluster slot."""
    if not user_key_:
        raise ValueError("caps_key needs a non-empty user key")
    return f"{user_key_}{CAPS_SUFFIX}"


def is_user_key(key: str) -> bool:
    """True for keys shaped like :func:`user_key` output."""
    return (len(key) == len(USER_PREFIX) + _TAG_HEX_DIGITS + 2 and key.startswith(USER_PREFIX + "{")
            and key.endswith("}"))
