"""The command line keeps the memory of the maps it frees (dpcstem.cli._keep_freed_maps)."""

import subprocess
import sys

import pytest

MAKE_MAPS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from dpcstem.cli import _keep_freed_maps
    _keep_freed_maps()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = faults()
for _ in range(10):  # one map's temporaries after another: several alive at once, then freed
    a = np.ones(2 * 2**20); b = np.ones(2 * 2**20); c = a + b
    del a, b, c
print(faults() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (mallopt) is what is set")
def test_maps_made_one_after_another_reuse_the_pages_of_the_freed_ones():
    def faults(mode):
        run = subprocess.run([sys.executable, "-c", MAKE_MAPS, mode], capture_output=True, text=True, check=True)
        return int(run.stdout)

    kept, default = faults("keep"), faults("default")
    # kept: the first pass faults its pages in and the next nine reuse them; by default each
    # pass's pages are handed back and faulted in again (10 passes: measured 1537 against 15305)
    assert 0 < 5 * kept < default
