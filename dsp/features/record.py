"""The features record: how one user's contract vector is encoded in Redis.

A record is a msgpack array ``[schema_version, features]`` where ``features`` is a msgpack ``bin``
holding ``N_FEATURES`` little-endian float32 values in contract order (136 bytes for 32 features).
Compact, one allocation to decode, and the version travels with the data.

:func:`decode_record` never raises: a blob that is not a record, has another schema version, the
wrong length or a non-finite value decodes to ``None`` (the caller treats the user as unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import msgspec
import numpy as np
import numpy.typing as npt

from dsp.features.contract import N_FEATURES
from dsp.features.keys import SCHEMA_VERSION

FloatArray = npt.NDArray[np.float32]

_RECORD_BYTES = 4 * N_FEATURES
_LE_F32 = np.dtype("<f4")


class FeatureRecord(msgspec.Struct, array_like=True):
    """Wire form: ``[v, f]``; ``f`` is raw little-endian float32 bytes."""

    v: int
    f: bytes


class RecordCodec:
    """Encoder/decoder pair, built once and reused (msgspec encoders are not free to build)."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(FeatureRecord)

    def encode(self, features: FloatArray, *, version: int = SCHEMA_VERSION) -> bytes:
        """Encode one contract-order vector (any float dtype; stored as float32)."""
        vec = np.asarray(features, dtype=_LE_F32)
        if vec.shape != (N_FEATURES,):
            raise ValueError(f"expected {N_FEATURES} features, got shape {vec.shape}")
        return self._encoder.encode(FeatureRecord(version, vec.tobytes()))

    def encode_rows(self, rows: FloatArray) -> Iterator[bytes]:
        """Encode each row of an (n, N_FEATURES) matrix."""
        mat = np.ascontiguousarray(rows, dtype=_LE_F32)
        if mat.ndim != 2 or mat.shape[1] != N_FEATURES:
            raise ValueError(f"expected (n, {N_FEATURES}) rows, got shape {mat.shape}")
        encode = self._encoder.encode
        raw = mat.tobytes()
        for i in range(mat.shape[0]):
            yield encode(FeatureRecord(SCHEMA_VERSION, raw[i * _RECORD_BYTES:(i + 1) * _RECORD_BYTES]))

    def payload(self, blob: bytes) -> bytes | None:
        """The raw float32 bytes of a record of this schema version and size, else None."""
        try:
            rec = self._decoder.decode(blob)
        except msgspec.DecodeError:
            return None
        if rec.v != SCHEMA_VERSION or len(rec.f) != _RECORD_BYTES:
            return None
        return rec.f

    @staticmethod
    def matrix(payloads: list[bytes]) -> FloatArray:
        """Stack payloads from :meth:`payload` into a writable (n, N_FEATURES) float32 matrix."""
        mat = np.frombuffer(b"".join(payloads), dtype=_LE_F32).reshape(len(payloads), N_FEATURES)
        return mat.astype(np.float32)  # native byte order, owns its memory

    def decode(self, blob: bytes) -> FloatArray | None:
        """The float32 vector, or None when the blob is malformed or of another schema version."""
        raw = self.payload(blob)
        if raw is None:
            return None
        vec = np.frombuffer(raw, dtype=_LE_F32).astype(np.float32)
        if not np.isfinite(vec).all():
            return None
        return vec


MalformedCallback = Callable[[int], None]
