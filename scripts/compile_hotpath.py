"""Build the mypyc extensions of dsp.compiled.HOT_PATH in place (see scripts/compile).

    .venv/bin/python scripts/compile_hotpath.py            # build unless up to date
    .venv/bin/python scripts/compile_hotpath.py --force    # rebuild
    .venv/bin/python scripts/compile_hotpath.py --clean    # remove the build (pure Python again)

Exit 0 when the build is up to date or was made, and also when no C toolchain is present (a
warning says so: the bidder runs the pure-Python modules). Exit 1 when a toolchain is present and
the build fails: that is a bug to fix, not a reason to fall back silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DSP_PURE_PYTHON"] = "1"  # never import an extension while (re)building it

from dsp import compiled  # noqa: E402

GROUP = "dsp.hotpath"  # the shared library: dsp/hotpath__mypyc.cpython-*.so


def built_files() -> list[Path]:
    """Every extension under dsp/: all of them come from this build (also those of modules
    that have since left HOT_PATH or the tree, e.g. after a merge)."""
    return sorted(compiled.PACKAGE_DIR.rglob("*.so"))


def clean() -> None:
    for p in built_files():
        p.unlink()
    compiled.MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(ROOT / "build" / "mypyc", ignore_errors=True)


def up_to_date() -> bool:
    try:
        recorded = json.loads(compiled.MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    n_so = len(built_files())
    return (recorded.get("sources") == compiled.source_digests()
            and recorded.get("python") == sysconfig.get_config_var("EXT_SUFFIX")
            and n_so == len(compiled.HOT_PATH) + 1)


def toolchain_missing() -> str | None:
    """Why the extensions cannot be built here, or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.exists():
        return f"no Python headers ({header}; Debian/Ubuntu: apt-get install python3-dev)"
    return None


def build() -> None:
    digests = compiled.source_digests()
    paths = [str(compiled.source_path(m).relative_to(ROOT)) for m in compiled.HOT_PATH]
    clean()
    # A child process: setuptools and mypyc stay out of this one, and the build's noise goes
    # to a log that is shown only on failure.
    code = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='dsp-hotpath', script_args=['build_ext', '--inplace'],\n"
        f"      ext_modules=mypycify({paths!r}, group_name={GROUP!r}, opt_level='3',\n"
        f"                           target_dir='build/mypyc'))\n")
    with tempfile.TemporaryFile() as log:
        rc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "DSP_PURE_PYTHON": "1"}).returncode
        if rc != 0:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-6000:])
            clean()
            raise SystemExit(f"compile: mypyc build failed (exit {rc}); the pure-Python modules stay in use")
    if compiled.source_digests() != digests:
        clean()
        raise SystemExit("compile: sources changed during the build; run scripts/compile again")
    compiled.MANIFEST.write_text(json.dumps({
        "python": sysconfig.get_config_var("EXT_SUFFIX"), "sources": digests}, indent=1) + "\n",
        encoding="utf-8")


def main(argv: list[str]) -> int:
    if "--clean" in argv:
        clean()
        print("compile: removed the compiled hot path (pure Python)", file=sys.stderr)
        return 0
    if "--force" not in argv and up_to_date():
        return 0
    if os.environ.get("DSP_NO_COMPILE", "") not in ("", "0"):
        print("compile: DSP_NO_COMPILE set; the hot path runs as plain Python", file=sys.stderr)
        return 0
    missing = toolchain_missing()
    if missing is not None:
        print(f"compile: WARNING: {missing}; the hot path runs as plain Python", file=sys.stderr)
        return 0
    print(f"compile: mypyc {len(compiled.HOT_PATH)} modules: {', '.join(compiled.HOT_PATH)}",
          file=sys.stderr, flush=True)
    build()
    print("compile: done (dsp/_compiled.json)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
