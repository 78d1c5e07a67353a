"""Which build of the hot path runs (dsp.compiled): the selection, the stale-build guard, the
start-up log line. The behaviour of the compiled modules is checked by running the bid path's
tests on them (scripts/test runs those files a second time with the compiled build)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsp import compiled

ROOT = Path(__file__).resolve().parent.parent
BUILT = any(compiled.PACKAGE_DIR.glob("hotpath__mypyc.*.so"))
FRESH = BUILT and compiled.decide({}, compiled.MANIFEST, built=True)[0]


def _paths_in_child(env_value: str) -> dict[str, object]:
    code = ("import json, importlib; from dsp import compiled\n"
            "[importlib.import_module(m) for m in compiled.HOT_PATH]\n"
            "print(json.dumps({'compiled': compiled.COMPILED, 'status': compiled.STATUS,"
            " 'paths': compiled.loaded_paths()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                         text=True, env={**os.environ, compiled.PURE_ENV: env_value}).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_this_process_loads_the_build_it_selected() -> None:
    for m in compiled.HOT_PATH:
        importlib.import_module(m)
    paths = compiled.loaded_paths()
    assert set(paths) == set(compiled.HOT_PATH)
    want = "compiled" if compiled.COMPILED else "pure"
    assert set(paths.values()) == {want}, compiled.STATUS


def test_pure_env_loads_every_module_from_source() -> None:
    got = _paths_in_child("1")
    assert got["compiled"] is False
    assert got["status"] == f"pure Python ({compiled.PURE_ENV}=1)"
    assert set(got["paths"].values()) == {"pure"}  # type: ignore[attr-defined]


@pytest.mark.skipif(not FRESH, reason="no fresh compiled build here (scripts/compile makes one)")
def test_compiled_build_is_used_when_present_and_fresh() -> None:
    got = _paths_in_child("0")
    assert got["compiled"] is True, got["status"]
    assert set(got["paths"].values()) == {"compiled"}  # type: ignore[attr-defined]


def test_stale_or_missing_manifest_falls_back_to_sources(tmp_path: Path) -> None:
    manifest = tmp_path / "_compiled.json"
    assert compiled.decide({}, manifest, built=False) == (
        False, "pure Python (no compiled build; scripts/compile makes one)")
    use, why = compiled.decide({}, manifest, built=True)
    assert not use and "manifest" in why
    digests = compiled.source_digests()
    manifest.write_text(json.dumps({"sources": digests}))
    assert compiled.decide({}, manifest, built=True) == (
        True, f"compiled (mypyc): {len(compiled.HOT_PATH)} modules")
    manifest.write_text(json.dumps({"sources": {**digests, "dsp.bidding.pricing": "0" * 64}}))
    use, why = compiled.decide({}, manifest, built=True)
    assert not use and "stale for dsp.bidding.pricing" in why
    assert compiled.decide({compiled.PURE_ENV: "1"}, manifest, built=True)[0] is False


def test_serve_logs_which_build_runs(caplog: pytest.LogCaptureFixture) -> None:
    from dsp.cli.serve import _log_build

    with caplog.at_level(logging.INFO, logger="dsp.serve"):
        _log_build()
    rec = next(r for r in caplog.records if r.getMessage().startswith("bid path: "))
    assert rec.getMessage() == f"bid path: {compiled.STATUS}"
    fields = rec.fields  # type: ignore[attr-defined]
    assert fields["build"] == ("compiled" if compiled.COMPILED else "pure")
    assert set(fields["modules"]) == set(compiled.HOT_PATH)
