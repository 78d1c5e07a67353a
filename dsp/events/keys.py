"""Redis key layout of the event streams (designed for Redis Cluster).

    dsp:ev:{00} … dsp:ev:{15}    one stream per shard; the hash tag {NN} puts each shard on its
                                 own slot, so a cluster spreads the streams over its nodes
    consumer group "sink"        every ``dsp events sink`` is one consumer of it

Writers rotate over the shards; the sink reads all of them. Changing the shard count is safe
while the sink drains every shard it finds (``--shards`` must cover the writers' count).
"""

from __future__ import annotations

STREAM_PREFIX = "dsp:ev:"
DEFAULT_SHARDS = 16
GROUP = "sink"


def stream_key(shard: int) -> str:
    """``dsp:ev:{07}`` for shard 7."""
    return f"{STREAM_PREFIX}{{{shard:02d}}}"


def stream_keys(shards: int = DEFAULT_SHARDS) -> list[str]:
    return [stream_key(i) for i in range(shards)]
