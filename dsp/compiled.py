"""Which build of the bid path's pure modules runs: mypyc-compiled or plain Python.

``scripts/bootstrap`` compiles the modules in :data:`HOT_PATH` with mypyc (``scripts/compile``)
into C extensions beside their sources (``dsp/bidding/pricing.cpython-311-….so``) and writes
:data:`MANIFEST`, the SHA-256 of each source it compiled. Python imports an extension before a
``.py`` of the same name, so a build is used as soon as it exists. :func:`select` (run by
``dsp/__init__.py`` before any submodule is imported) falls back to the ``.py`` sources, all of
them together, when:

* ``DSP_PURE_PYTHON=1`` is set (the test command runs the suite this way, and the hot-path tests
  again compiled), or
* a compiled module's source changed since the build (a stale build would silently run old
  code), or the manifest is missing or unreadable.

All or nothing: compiled modules call each other directly in C, so mixing a stale extension with
fresh sources could run both versions of a function. :data:`STATUS` says which path runs; the
bidder logs it at start-up.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

#: Modules compiled by ``scripts/compile``: ``mypy --strict`` code on the per-request path whose
#: work is on builtins (bytes, ints, floats, dicts): money arithmetic, the semantic checks, pricing,
#: the HTTP front, the metric tallies, the micro-batcher. Measured and left out (``bench_hotpath``,
#: docs/bidpath.md "Performance"): the filters, context, eligibility, decide, respond, tokens,
#: decoder, flow, endpoint and resolver ran 5-20 % *slower* compiled — they mostly read and build
#: msgspec Structs, which CPython 3.11's specialising interpreter does faster than mypyc's generic
#: attribute access and keyword calls on non-native classes.
HOT_PATH: tuple[str, ...] = (
    "dsp.money",
    "dsp.openrtb.validate",
    "dsp.bidding.pricing",
    "dsp.server.recorder",
    "dsp.batching",
    "dsp.server.front",
)
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_compiled.json"
PURE_ENV = "DSP_PURE_PYTHON"


def source_path(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def source_digests(modules: Sequence[str] = HOT_PATH) -> dict[str, str]:
    """SHA-256 of each module's source (what the manifest records at build time)."""
    return {m: hashlib.sha256(source_path(m).read_bytes()).hexdigest() for m in modules}


class _SourceOnlyFinder(importlib.abc.MetaPathFinder):
    """Finds every ``dsp.*`` module from its ``.py`` file, so no built extension is imported (not
    even one left over from a build with a different module list, e.g. another branch's)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("dsp.") or not path:
            return None
        loader = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, loader).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def _built() -> bool:
    return any(PACKAGE_DIR.glob("hotpath__mypyc.*.so"))


def decide(env: Mapping[str, str], manifest: Path, built: bool) -> tuple[bool, str]:
    """(use the compiled modules, why) without importing any of them."""
    if env.get(PURE_ENV, "") not in ("", "0"):
        return False, f"pure Python ({PURE_ENV}=1)"
    if not built:
        return False, "pure Python (no compiled build; scripts/compile makes one)"
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, "pure Python (compiled build without a readable manifest: run scripts/compile)"
    current = source_digests()
    stale = sorted(m for m in HOT_PATH if recorded.get(m) != current[m])
    if stale:
        return False, f"pure Python (compiled build is stale for {', '.join(stale)}: run scripts/compile)"
    return True, f"compiled (mypyc): {len(HOT_PATH)} modules"


COMPILED = False
STATUS = "pure Python (not selected yet)"


def select() -> None:
    """Decide once per process; install the source-only finder when the pure path is chosen."""
    global COMPILED, STATUS
    COMPILED, STATUS = decide(os.environ, MANIFEST, _built())
    if not COMPILED and not any(isinstance(f, _SourceOnlyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnlyFinder())


def loaded_paths() -> dict[str, str]:
    """For each hot-path module already imported: 'compiled' or 'pure' (tests, start-up log)."""
    out: dict[str, str] = {}
    for m in HOT_PATH:
        mod = sys.modules.get(m)
        if mod is not None:
            out[m] = "compiled" if str(getattr(mod, "__file__", "")).endswith(".so") else "pure"
    return out
