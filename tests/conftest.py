import atexit
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHARED_DATA = Path(os.environ.get("DPCSTEM_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture
def shared_data():
    """The folder of reference files beside the project; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (it lives beside the project, not in it)")
    return SHARED_DATA


@pytest.fixture
def rng():
    return __import__("numpy").random.default_rng(20261122)


os.environ.setdefault("NUMBA_NUM_THREADS", "2")

# The inverse-table cache ($DPCSTEM_CACHE, else ~/.cache/dpcstem) of this test session: a folder of
# its own, removed at the end, inherited by the command-line runs in subprocesses; never the user's.
CACHE = Path(tempfile.mkdtemp(prefix="dpcstem-test-cache-"))
os.environ["DPCSTEM_CACHE"] = str(CACHE)
atexit.register(shutil.rmtree, CACHE, ignore_errors=True)
