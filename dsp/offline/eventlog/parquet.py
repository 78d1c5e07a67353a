"""Events -> Parquet files, crash-safe. The column types follow the event Structs exactly.

    path, size = write_events(root, "bid", "2026-12-03", 9, "part-03-1764...-0-1764...-5", events)

Layout (docs/events.md): ``root/kind=<kind>/date=YYYY-MM-DD/hour=HH/<name>.parquet``. A file is
written as ``.<name>.parquet.tmp`` beside its final place, fsynced, renamed over the final name
(atomic on POSIX), and the directory is fsynced, so after a crash a reader sees either the whole
file or none of it, and writing the same name again replaces it (no second copy).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from dsp.events.schema import BY_KIND, Event

_SCALARS: dict[type, pa.DataType] = {
    msgspec.inspect.StrType: pa.string(), msgspec.inspect.IntType: pa.int64(),
    msgspec.inspect.FloatType: pa.float64(), msgspec.inspect.BoolType: pa.bool_(),
    msgspec.inspect.BytesType: pa.binary()}


def _arrow_type(t: msgspec.inspect.Type) -> pa.DataType:
    scalar = _SCALARS.get(type(t))
    if scalar is not None:
        return scalar
    if isinstance(t, msgspec.inspect.DictType):
        return pa.map_(_arrow_type(t.key_type), _arrow_type(t.value_type))
    if isinstance(t, msgspec.inspect.ListType):
        return pa.list_(_arrow_type(t.item_type))
    raise TypeError(f"no Parquet type for {t!r}")


@cache
def arrow_schema(kind: str) -> pa.Schema:
    """``event_id`` then every field of the kind's Struct, in declaration order."""
    info = msgspec.inspect.type_info(BY_KIND[kind])
    assert isinstance(info, msgspec.inspect.StructType)
    fields = [pa.field("event_id", pa.string(), nullable=False)]
    fields += [pa.field(f.name, _arrow_type(f.type)) for f in info.fields]
    return pa.schema(fields)


def partition_of(ts_us: int) -> tuple[str, int]:
    """(UTC date ``YYYY-MM-DD``, UTC hour) of an event time."""
    t = dt.datetime.fromtimestamp(ts_us / 1_000_000, tz=dt.UTC)
    return t.strftime("%Y-%m-%d"), t.hour


def partition_dir(root: Path, kind: str, date: str, hour: int) -> Path:
    return root / f"kind={kind}" / f"date={date}" / f"hour={hour:02d}"


def table_of(kind: str, events: Sequence[Event]) -> pa.Table:
    schema = arrow_schema(kind)
    rows = []
    for ev in events:
        row = msgspec.structs.asdict(ev)
        row["event_id"] = ev.event_id
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_events(root: Path, kind: str, date: str, hour: int, name: str,
                 events: Sequence[Event]) -> tuple[Path, int]:
    """Write ``events`` (all of ``kind``, all in that hour) as one file. Returns (path, bytes)."""
    directory = partition_dir(root, kind, date, hour)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{name}.parquet"
    tmp = directory / f".{name}.parquet.tmp"
    table = table_of(kind, events)
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final, final.stat().st_size


def read_kind(root: Path, kind: str) -> pa.Table:
    """Every file of one kind (tests and small tools; reports use DuckDB)."""
    base = root / f"kind={kind}"
    files = sorted(base.rglob("*.parquet")) if base.exists() else []
    if not files:
        return arrow_schema(kind).empty_table()
    return pa.concat_tables([pq.read_table(f, schema=arrow_schema(kind)) for f in files])
