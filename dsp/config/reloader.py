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


class Candidate(msgspec.Struct, frozen=True):
    """A reload prepared off the event loop: the new snapshot or the problems found."""

    snapshot: Snapshot | None
    problems: list[str]
    seen: tuple[tuple[str, int, int], ...]
    remember: bool  # record ``seen`` (False: the tree was unreadable; retry next tick)


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

    def prepare(self) -> Candidate:
        """Read and compile the files (13-19 ms for the demo config): thread-safe, changes
        nothing, so the server runs it off the event loop and calls :meth:`apply` on it."""
        seen = _fingerprint(self.root)
        try:
            return Candidate(load_snapshot(self.root), [], seen, True)
        except ConfigInvalid as exc:
            # Remember the broken files' fingerprint: do not retry them every tick.
            return Candidate(None, [str(p) for p in exc.problems], seen, True)
        except Exception as exc:  # unreadable tree etc.: keep serving, retry on the next tick
            problem = ConfigProblem(str(self.root), "", f"{type(exc).__name__}: {exc}")
            return Candidate(None, [str(problem)], seen, False)

    def apply(self, candidate: Candidate) -> ReloadResult:
        """Swap in a prepared snapshot (on the thread that owns the holder); never raises for
        bad config."""
        if candidate.remember:
            self._seen = candidate.seen
        snap = candidate.snapshot
        if snap is None:
            return ReloadResult(False, self.current.version, False, candidate.problems)
        changed = snap.version != self.current.version
        self.current = snap
        if changed and self._on_change is not None:
            self._on_change(snap)
        return ReloadResult(True, snap.version, changed)

    def reload(self) -> ReloadResult:
        """Load and compile again; swap only if valid. Never raises for bad config."""
        return self.apply(self.prepare())
