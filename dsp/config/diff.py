"""Field-level differences between two config snapshots (what a marketer's edit changes). Pure.

    for change in diff_snapshots(old, new):
        print(change)        # "campaign quickloan-prime: max_cpm_micros 6000000 -> 7250000"
"""

from __future__ import annotations

from typing import Any

import msgspec

from dsp.config.snapshot import Snapshot

_SKIP = {"banners", "by_kind", "cat_keys"}  # derived indexes; the creatives list says it better


class Change(msgspec.Struct, frozen=True):
    kind: str  # campaign | exchange | rates
    name: str
    field: str  # "" for added/removed
    old: Any
    new: Any

    def __str__(self) -> str:
        if self.field == "":
            return f"{self.kind} {self.name}: {'added' if self.old is None else 'removed'}"
        return f"{self.kind} {self.name}: {self.field} {self.old!r} -> {self.new!r}"


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(obj, builtin_types=(set, frozenset))
    return out


def _walk(kind: str, name: str, old: Any, new: Any, prefix: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if key in _SKIP:
                continue
            _walk(kind, name, old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key), out)
        return
    if isinstance(old, set | frozenset):
        old = sorted(old, key=str)
    if isinstance(new, set | frozenset):
        new = sorted(new, key=str)
    if old != new:
        out.append(Change(kind, name, prefix, old, new))


def diff_snapshots(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every added/removed campaign or exchange and every changed field, sorted by name."""
    out: list[Change] = []
    for kind, a, b in (("campaign", {c.id: c for c in old.campaigns}, {c.id: c for c in new.campaigns}),
                       ("exchange", old.exchanges, new.exchanges)):
        for name in sorted(set(a) | set(b)):
            if name not in b:
                out.append(Change(kind, name, "", "present", None))
            elif name not in a:
                out.append(Change(kind, name, "", None, "present"))
            else:
                _walk(kind, name, _plain(a[name]), _plain(b[name]), "", out)
    _walk("rates", old.rates.base, old.rates.rates, new.rates.rates, "", out)
    return out
