"""Hold the active :class:`Snapshot` and swap it atomically on a successful reload.

    holder = SnapshotHolder.load(Path("bidder_configs"))    # raises ConfigInvalid at start-up
    snap = holder.current                                   # the bid path reads this reference
    result = holder.reload()                                # keeps the old snapshot on failure

Triggers (wired by the server): SIGHUP, ``POST /admin/reload``, and a periodic check of the files'
modification times (:meth:`changed`), so an edit is picked up without a restart. A failed reload
keeps serving the last good snapshot and reports every problem (file and path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from dsp.config.snapshot import Snapshot, load_snapshot
from dsp.errors import ConfigInvalid, ConfigProblem


class ReloadResult(msgspec.Struct, frozen=True):
    ok: bool
    version: str  # the active version after the attempt
    changed: bool
    problems: list[str] = []


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    # YAML plus the traffic data files (bot patterns, ranges, sellers.json, ads.txt): a
    # ``dsp traffic refresh`` is picked up like an edit.
    files = sorted(p for p in root.rglob("*")
                   if p.suffix in (".yaml", ".yml", ".txt", ".csv", ".json") and p.is_file())
    out = []
    for p in files:
        st = p.stat()
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


class SnapshotHolder:
    """The one mutable reference to config in a process; everything else is immutable."""

    def __init__(self, root: Path, snapshot: Snapshot,
                 on_change: Callable[[Snapshot], None] | None = None) -> None:
        self.root = root
        self.current = snapshot
        self._seen = _fingerprint(root)
        self._on_change = on_change

    @classmethod
    def load(cls, root: Path) -> SnapshotHolder:
        return cls(root, load_snapshot(root))

    def subscribe(self, on_change: Callable[[Snapshot], None]) -> None:
        """Call ``on_change(new_snapshot)`` after each successful swap (e.g. budgets to money)."""
        self._on_change = on_change

    def changed(self) -> bool:
        """True if any config file was added, removed or modified since the last (re)load."""
        try:
            return _fingerprint(self.root) != self._seen
        except OSError:
            return True

    def reload(self) -> ReloadResult:
        """Load and compile again; swap only if valid. Never raises for bad config."""
        seen = _fingerprint(self.root)
        try:
            snap = load_snapshot(self.root)
        except ConfigInvalid as exc:
            self._seen = seen  # do not retry the same broken files every tick
            return ReloadResult(False, self.current.version, False, [str(p) for p in exc.problems])
        except Exception as exc:  # unreadable tree etc.: keep serving
            problem = ConfigProblem(str(self.root), "", f"{type(exc).__name__}: {exc}")
            return ReloadResult(False, self.current.version, False, [str(problem)])
        self._seen = seen
        changed = snap.version != self.current.version
        self.current = snap
        if changed and self._on_change is not None:
            self._on_change(snap)
        return ReloadResult(True, snap.version, changed)
