"""The tests keep the inverse-table cache in a folder of their own, never the user's ~/.cache/dpcstem."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import CACHE

from dpcstem.io.table_cache import cache_path
from dpcstem.response import exact


def _tables(folder: Path):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")} if folder.is_dir() else {}


def test_the_table_cache_of_the_tests_is_a_temporary_folder(tmp_path):
    assert os.environ["DPCSTEM_CACHE"] == str(CACHE)
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dpcstem"
    before = _tables(home)
    # A geometry no other test uses, built in a command-line run (a subprocess, as the CLI tests run).
    inner, outer = 0.123, 3.21
    run = subprocess.run([sys.executable, "-c", "from dpcstem.response import exact; "
                          "from dpcstem.io.table_cache import cache_path; "
                          f"print(cache_path({inner!r}, {outer!r}, exact.TABLE_SIZE)); "
                          f"exact._inverse_table({inner!r}, {outer!r})"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    written = Path(run.stdout.split()[0])
    assert written.parent == CACHE and written.is_file()
    assert cache_path(inner, outer, exact.TABLE_SIZE) == written
    assert _tables(home) == before
